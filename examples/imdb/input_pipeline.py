"""IMDB reviews from tensorflow-datasets: tokenizer, vocabulary, padding, splits, batches.

Reviews are read with `tfds.data_source` (random access to the prepared array_record
files, no TensorFlow). `prepare` downloads and prepares them once, which does need
TensorFlow: tfds reads the downloaded archive through tf.io.gfile. Tokens are lower-cased
words with HTML line breaks removed; ids 0 and 1 are reserved for padding and
out-of-vocabulary words, and the `vocab_size - 2` most frequent training words get ids
2, 3, ... by rank. A review longer
than `maxlen` keeps its LAST `maxlen` tokens (Keras' default truncating="pre": the end
of a review, the verdict, carries the most sentiment). Reviews are right-padded and come
with their lengths, so that the model never reads the padding.

Data order is a pure function of (seed, epoch), so a run resumed in the middle of an
epoch continues with exactly the batches an uninterrupted run would have seen.
"""

import collections
import glob
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Dict, List, NamedTuple, Optional, Sequence
from unittest import mock

import numpy as np

PAD, OOV = 0, 1
NAME = "imdb_reviews"
_BREAK = re.compile(r"<br\s*/?>")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")  # don't, it's: one token each


class DataError(Exception):
  """The data dir is missing, empty or unreadable; the message says what to do."""


class Reviews(NamedTuple):
  """Encoded reviews: tokens int32 [n, maxlen] right-padded with 0, lengths int32 [n]
  (at least 0, at most maxlen), labels int32 [n] (1 = positive)."""

  tokens: np.ndarray
  lengths: np.ndarray
  labels: np.ndarray

  def take(self, index):
    return Reviews(self.tokens[index], self.lengths[index], self.labels[index])


class Data(NamedTuple):
  train: Reviews
  val: Reviews
  test: Reviews
  vocab: Dict[str, int]


def resolve_data_dir(data_dir: Optional[str]) -> str:
  """--data-dir, else $TFDS_DATA_DIR, else tfds' default ~/tensorflow_datasets."""
  if data_dir:
    return os.path.expanduser(data_dir)
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _how_to_fix(data_dir):
  return (f"Pass --data-dir DIR or set TFDS_DATA_DIR=DIR, DIR being a tensorflow-datasets "
          f"directory holding a prepared {NAME} in array_record format (e.g. "
          f"../shared/tensorflow_datasets); examples/imdb/train.py downloads and prepares "
          f"it in a DIR that holds none, unless given --no-download (it needs a network, or "
          f"--download-url naming a copy of aclImdb_v1.tar.gz). Looked in: {data_dir}")


def _in_versions(data_dir: str, pattern: str) -> List[str]:
  """The files matching `pattern` in imdb_reviews' CONFIG/VERSION dirs: versions only,
  not the incomplete.* dir a killed prepare leaves behind."""
  return glob.glob(os.path.join(data_dir, NAME, "*", "[0-9]*", pattern))


def is_prepared(data_dir: str) -> bool:
  """Whether `data_dir` holds imdb_reviews' dataset_info.json and *.array_record files."""
  return bool(_in_versions(data_dir, "dataset_info.json")
              and _in_versions(data_dir, "*.array_record*"))


def check_data_dir(data_dir: str) -> None:
  """Raises DataError with what to pass or set unless `data_dir` holds imdb_reviews."""
  if not os.path.isdir(data_dir):
    raise DataError(f"the data dir does not exist. {_how_to_fix(data_dir)}")
  if not is_prepared(data_dir):
    raise DataError(f"no prepared {NAME} (dataset_info.json and *.array_record files) "
                    f"in the data dir. {_how_to_fix(data_dir)}")


def _check_can_prepare(data_dir: str) -> None:
  """Fails before any download if tfds could not prepare the data: it imports both
  packages (importlib_resources only declared by tfds for Python < 3.9), and it would
  keep a copy prepared in another file format (tfds.load's tfrecord) as it is."""
  for package in ("tensorflow", "importlib_resources"):
    if importlib.util.find_spec(package) is None:
      raise DataError(f"preparing {NAME} needs the {package} package, which is not "
                      f"installed: pip install -e '.[examples]'. {_how_to_fix(data_dir)}")
  if _in_versions(data_dir, "dataset_info.json"):
    raise DataError(f"the data dir holds an {NAME} prepared in a file format other than "
                    f"array_record (tfds.load's tfrecord, say): delete "
                    f"{os.path.join(data_dir, NAME)} to let the trainer prepare it again. "
                    f"{_how_to_fix(data_dir)}")


def _check_reachable(url: str, data_dir: str) -> None:
  """Fails fast when nothing answers at `url`: tfds would retry a refused connection for
  over 3 minutes (10 tries, doubling pauses), printing a warning for each."""
  if "://" not in url:  # a local file, which tfds copies
    if os.path.isfile(url):
      return
    reason = "no such file"
  else:
    try:
      urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30).close()
      return
    except urllib.error.HTTPError:
      return  # a server answered: tfds reports its HTTP status itself
    except (urllib.error.URLError, OSError) as e:  # refused, unreachable, no DNS, timeout
      reason = getattr(e, "reason", e)
  raise DataError(f"could not reach {url} to download {NAME} ({reason}). "
                  f"{_how_to_fix(data_dir)}")


def prepare(data_dir: str, url: Optional[str] = None) -> None:
  """Downloads aclImdb_v1.tar.gz (80 MB) and prepares imdb_reviews in array_record format
  in `data_dir`, with tfds' progress bars; the archive stays in `data_dir`/downloads.

  Args:
    data_dir: the tfds data dir (created if needed).
    url: where to get the archive (a mirror, or a local file); default: the builder's own
      URL (Stanford's), whose download tfds checks against its registered checksum.

  Raises:
    DataError: saying what to do, when the archive cannot be fetched or prepared.
  """
  _check_can_prepare(data_dir)
  import tensorflow_datasets as tfds  # imported here: it is slow to import
  # array_record: what data_source reads (tfds.data_source(download=True) writes tfrecord)
  builder = tfds.builder(NAME, data_dir=data_dir, file_format="array_record")
  # The builder takes no URL: it downloads its module's _DOWNLOAD_URL, read when it runs.
  # Swapping that constant meanwhile is smaller than a subclass, which tfds would register
  # as another dataset, prepared under another name.
  source = sys.modules[type(builder).__module__]
  url = url or source._DOWNLOAD_URL
  _check_reachable(url, data_dir)
  print(f"Downloading {NAME} from {url} and preparing it in {data_dir} (once: 80 MB, "
        f"a few minutes)", flush=True)
  try:
    with mock.patch.object(source, "_DOWNLOAD_URL", url):
      builder.download_and_prepare()
  except Exception as e:  # tfds raises many kinds (network, checksum, disk); one meaning here
    raise DataError(f"could not download and prepare {NAME} from {url} "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                    f"{_how_to_fix(data_dir)}") from None


def load_split(data_dir: str, split: str, limit: int = 0):
  """Reads `split` ("train" or "test") of the imdb_reviews prepared in `data_dir`:
  (texts, labels int32 [n]); the first `limit` reviews if `limit` > 0."""
  import tensorflow_datasets as tfds  # imported here: it is slow to import
  check_data_dir(data_dir)
  try:
    source = tfds.data_source(NAME, split=split, data_dir=data_dir, download=False)
    n = len(source) if not limit else min(limit, len(source))
    records = source.__getitems__(list(range(n)))
  except Exception as e:  # tfds raises many kinds for broken data; all mean the same here
    raise DataError(f"could not read the {split} split of {NAME} ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}). "
                    f"{_how_to_fix(data_dir)}") from None
  texts = [r["text"].decode("utf-8", "replace") for r in records]
  return texts, np.array([r["label"] for r in records], np.int32)


def tokenize(texts: Sequence[str]) -> List[List[str]]:
  """Lower-cased words of every text, HTML line breaks removed."""
  return [_WORD.findall(_BREAK.sub(" ", t.lower())) for t in texts]


def build_vocab(token_lists: Sequence[Sequence[str]], vocab_size: int) -> Dict[str, int]:
  """Maps the `vocab_size - 2` most frequent words to ids 2, 3, ... (ties: first seen)."""
  if vocab_size < 3:
    raise ValueError(f"vocab_size: expected at least 3 (2 ids are reserved), got {vocab_size}")
  counts = collections.Counter(itertools.chain.from_iterable(token_lists))
  return {w: i + 2 for i, (w, _) in enumerate(counts.most_common(vocab_size - 2))}


def encode(token_lists: Sequence[Sequence[str]], vocab: Dict[str, int], maxlen: int):
  """Ids of the last `maxlen` tokens of each text, right-padded with PAD.

  Returns:
    (tokens int32 [n, maxlen], lengths int32 [n]).
  """
  kept = [t[-maxlen:] for t in token_lists]
  lengths = np.fromiter(map(len, kept), np.int32, len(kept))
  ids = np.fromiter((vocab.get(w, OOV) for w in itertools.chain.from_iterable(kept)),
                    np.int32, int(lengths.sum()))
  rows = np.repeat(np.arange(len(kept)), lengths)
  starts = np.cumsum(lengths) - lengths
  cols = np.arange(ids.size) - np.repeat(starts, lengths)
  tokens = np.zeros((len(kept), maxlen), np.int32)
  tokens[rows, cols] = ids
  return tokens, lengths


def split_sizes(n: int, val_split: float):
  """(train, val) sizes of the hold-out of `split_indices`: val is round(n * val_split)."""
  n_val = int(round(n * val_split))
  if not 0 < n_val < n:
    raise ValueError(f"val_split: {val_split} of {n} reviews leaves an empty split")
  return n - n_val, n_val


def split_indices(n: int, val_split: float, seed: int):
  """A seeded random hold-out: (train indices, val indices), sized by `split_sizes`."""
  n_val = split_sizes(n, val_split)[1]
  order = np.random.default_rng([seed, 0]).permutation(n)
  return np.sort(order[n_val:]), np.sort(order[:n_val])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the n training reviews in `epoch`: a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, 1, epoch]).permutation(n)


def num_batches(n: int, batch_size: int) -> int:
  return -(-n // batch_size)


def bucket_lengths(maxlen: int, width: int):
  """The time lengths batches are cut to: multiples of `width` up to maxlen, or just
  maxlen when width is 0. Each is one compiled shape."""
  if not width:
    return (maxlen,)
  return tuple(range(width, maxlen, width)) + (maxlen,)


def batch(reviews: Reviews, index: np.ndarray, batch_size: int, bucket_width: int = 0) -> dict:
  """The reviews at `index` as a batch of exactly `batch_size` rows.

  A short last batch is filled up with rows of weight 0, so every step has one shape
  (one compilation) and the weighted means count each review once. With `bucket_width`
  the time axis is cut to the smallest of `bucket_lengths` that holds the longest review
  of the batch: only padding is cut, so the model computes the same numbers, faster.
  """
  pad = batch_size - len(index)
  part = reviews.take(np.concatenate([index, np.zeros(pad, index.dtype)]))
  weights = np.concatenate([np.ones(len(index), np.float32), np.zeros(pad, np.float32)])
  lengths = part.lengths * (weights > 0).astype(np.int32)
  maxlen = reviews.tokens.shape[1]
  time = next(t for t in bucket_lengths(maxlen, bucket_width) if t >= lengths.max(initial=0))
  return {"tokens": part.tokens[:, :time], "lengths": lengths, "labels": part.labels,
          "weights": weights}


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int,
                  bucket_width: int = 0, pool: int = 50):
  """The index arrays of an epoch's batches: a pure function of (seed, epoch).

  Without bucketing, consecutive slices of `epoch_order`. With `bucket_width`, each run
  of `pool` batches' worth of shuffled reviews is sorted by length before slicing, and
  the batches are shuffled again: batches hold reviews of similar length (less padding
  to run through) while the epoch stays random.
  """
  order = epoch_order(len(lengths), seed, epoch)
  if bucket_width:
    size = pool * batch_size
    order = np.concatenate([c[np.argsort(lengths[c], kind="stable")]
                            for c in np.split(order, range(size, len(order), size))])
  index = [order[b * batch_size:(b + 1) * batch_size]
           for b in range(num_batches(len(order), batch_size))]
  if bucket_width:
    index = [index[i] for i in np.random.default_rng([seed, 2, epoch]).permutation(len(index))]
  return index


def batches(reviews: Reviews, batch_size: int, order: Optional[np.ndarray] = None, start=0,
            bucket_width: int = 0):
  """Yields the batches of `reviews` in `order` (default: as stored), from batch `start`."""
  order = np.arange(len(reviews.labels)) if order is None else order
  for b in range(start, num_batches(len(order), batch_size)):
    yield batch(reviews, order[b * batch_size:(b + 1) * batch_size], batch_size, bucket_width)


def _read_and_encode(data_dir, vocab_size, maxlen, limit_train, limit_test):
  """(all training reviews, test reviews, vocabulary), from the prepared files."""
  train_texts, train_labels = load_split(data_dir, "train", limit_train)
  test_texts, test_labels = load_split(data_dir, "test", limit_test)
  train_tokens = tokenize(train_texts)
  vocab = build_vocab(train_tokens, vocab_size)
  full = Reviews(*encode(train_tokens, vocab, maxlen), train_labels)
  test = Reviews(*encode(tokenize(test_texts), vocab, maxlen), test_labels)
  return full, test, vocab


def _encoded(data_dir, cache_dir, **settings):
  """(all training reviews, test reviews, vocabulary): from the cache entry for
  `settings` when there is one, else read, encoded and written there."""
  import data_cache
  found = name = None
  if cache_dir:
    check_data_dir(data_dir)
    name = data_cache.key(_in_versions(data_dir, "*"), **settings)
    found = data_cache.load(cache_dir, name, settings["maxlen"], Reviews)
  if found is None:
    found = _read_and_encode(data_dir, **settings)
    if cache_dir:
      data_cache.save(cache_dir, name, *found)
  return found


def load(data_dir: str, vocab_size: int, maxlen: int, val_split: float, seed: int,
         limit_train: int = 0, limit_test: int = 0, cache_dir: Optional[str] = None) -> Data:
  """Reads, tokenises and encodes IMDB; the vocabulary comes from the whole train split
  (or its first `limit_train` reviews), as in Keras' imdb dataset. With `cache_dir`, the
  encoded reviews are read from there when an entry for these settings exists, and
  written there when not (`data_cache.py`)."""
  full, test, vocab = _encoded(data_dir, cache_dir, vocab_size=vocab_size, maxlen=maxlen,
                               limit_train=limit_train, limit_test=limit_test)
  train_idx, val_idx = split_indices(len(full.labels), val_split, seed)
  return Data(full.take(train_idx), full.take(val_idx), test, vocab)


def read_in_background(data_dir: str, cache_dir: Optional[str], **settings):
  """Starts reading and encoding IMDB into the cache entry for `settings` (`load`'s
  vocab_size, maxlen, limit_train, limit_test) in a process of its own, so that the
  caller can compile meanwhile: each takes one core. Returns the process (wait for it,
  then `load` finds the entry; if it failed, `load` reads itself and raises its errors),
  or None when there is no cache or the entry exists. A process, not a thread: a thread
  compiling beside the reading slowed the later training steps by 10-40% (NOTES v16)."""
  import data_cache
  if not cache_dir:
    return None
  check_data_dir(data_dir)
  name = data_cache.key(_in_versions(data_dir, "*"), **settings)
  if os.path.exists(os.path.join(cache_dir, name + ".npz")):
    return None
  job = json.dumps({"data_dir": data_dir, "cache_dir": cache_dir, **settings})
  return subprocess.Popen([sys.executable, os.path.abspath(__file__), job],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def num_reviews(data_dir: str, split: str, limit: int = 0) -> int:
  """How many reviews `load_split` reads, without reading them: the split's size in the
  prepared files' dataset_info.json (tfds' record of it), at most `limit` if > 0."""
  try:
    with open(max(_in_versions(data_dir, "dataset_info.json"))) as f:
      info = json.load(f)
    n = sum(int(k) for s in info["splits"] if s["name"] == split for k in s["shardLengths"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DataError(f"could not read the {split} split of {NAME} (its size in "
                    f"dataset_info.json: {type(e).__name__}: {e}). "
                    f"{_how_to_fix(data_dir)}") from None
  return min(limit, n) if limit else n


if __name__ == "__main__":  # the process `read_in_background` starts
  _encoded(**json.loads(sys.argv[1]))
