"""A cache of the encoded reviews (`--data-cache`): a repeated or relaunched command skips
reading, tokenising and encoding IMDB (about 13 s of the seed command on a 2-core CPU).

One .npz per key, the key being everything its arrays follow from: the prepared
imdb_reviews files (each file's name, size and modification time), the vocabulary size,
maxlen, the --limit-train / --limit-test slices and FORMAT, which changes whenever the
tokeniser or the encoding does. The validation split is not in it: it is cut from the
cached training reviews afterwards. Entries are written atomically (a temporary file,
then `os.replace`), so a killed run never leaves half of one; one that cannot be read
is recomputed and written again.

`--data-cache auto` (the default): $XDG_CACHE_HOME/deeprnn_jax/imdb (~/.cache/...);
`--data-cache DIR`; `--data-cache off`: read and encode every time.
"""

import hashlib
import json
import os
import sys

import numpy as np

FORMAT = 1  # bump with any change to input_pipeline's tokenize, build_vocab or encode


def resolve(setting):
  """The directory that --data-cache SETTING names, or None (off)."""
  if setting is None or setting.lower() in ("off", "none"):
    return None
  if setting != "auto":
    return os.path.abspath(os.path.expanduser(setting))
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "deeprnn_jax", "imdb")


def key(files, **settings):
  """The entry's name: a hash of the data files' (name, size, mtime) and `settings`."""
  stats = [(os.path.basename(f), os.path.getsize(f), int(os.path.getmtime(f)))
           for f in sorted(files)]
  text = json.dumps({"format": FORMAT, "files": stats, **settings}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:32]


def _pack(reviews):
  """Reviews -> (ids of the valid tokens, flat [sum(lengths)], lengths, labels): padding
  is not stored, so an entry for maxlen 500 is a fifth of the padded arrays."""
  valid = np.arange(reviews.tokens.shape[1])[None, :] < reviews.lengths[:, None]
  return reviews.tokens[valid], reviews.lengths, reviews.labels


def _unpack(ids, lengths, labels, maxlen, reviews_type):
  tokens = np.zeros((len(lengths), maxlen), np.int32)
  tokens[np.arange(maxlen)[None, :] < lengths[:, None]] = ids
  return reviews_type(tokens, lengths.astype(np.int32), labels.astype(np.int32))


def load(directory, name, maxlen, reviews_type):
  """(train, test, vocab) from the entry `name`, or None if there is none or it is
  unreadable."""
  path = os.path.join(directory, name + ".npz")
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as z:
      splits = [_unpack(z[f"{s}_ids"], z[f"{s}_lengths"], z[f"{s}_labels"], maxlen,
                        reviews_type) for s in ("train", "test")]
      words = z["vocab"].tolist()
  except (OSError, ValueError, KeyError) as e:
    print(f"warning: --data-cache: cannot read {path} ({e}); encoding the reviews again",
          file=sys.stderr)
    return None
  return splits[0], splits[1], {w: i + 2 for i, w in enumerate(words)}


def save(directory, name, train, test, vocab):
  """Writes the entry atomically; a cache that cannot be written only warns."""
  arrays = {}
  for split, reviews in (("train", train), ("test", test)):
    ids, lengths, labels = _pack(reviews)
    dtype = np.uint16 if len(vocab) + 2 <= 65536 else np.int32
    arrays.update({f"{split}_ids": ids.astype(dtype), f"{split}_lengths": lengths,
                   f"{split}_labels": labels})
  arrays["vocab"] = np.array(sorted(vocab, key=vocab.get))  # words by id, from id 2
  path = os.path.join(directory, name + ".npz")
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  try:
    os.makedirs(directory, exist_ok=True)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
  except OSError as e:
    print(f"warning: --data-cache: cannot write {path} ({e.strerror})", file=sys.stderr)
