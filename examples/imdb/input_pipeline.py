"""IMDB reviews as batches for the classifier: vocabulary, encoding, splits, batches.

The reviews and their tokens come from examples/common/imdb_text.py (tensorflow-datasets'
`data_source`, no TensorFlow). Ids 0 and 1 are reserved for padding and
out-of-vocabulary words, and the `vocab_size - 2` most frequent training words get ids
2, 3, ... by rank. A review longer
than `maxlen` keeps its LAST `maxlen` tokens (Keras' default truncating="pre": the end
of a review, the verdict, carries the most sentiment). Reviews are right-padded and come
with their lengths, so that the model never reads the padding.

Data order is a pure function of (seed, epoch), so a run resumed in the middle of an
epoch continues with exactly the batches an uninterrupted run would have seen.
"""

import collections
import itertools
import json
import os
import pathlib
import subprocess
import sys
from typing import Dict, NamedTuple, Optional, Sequence

import numpy as np

from examples.common import imdb_text
from examples.imdb import data_cache

PAD, OOV = 0, 1
tokenize = imdb_text.tokenize
CHECKOUT = pathlib.Path(__file__).resolve().parents[2]  # where `-m examples...` resolves


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
  train_texts, train_labels = imdb_text.load_split(data_dir, "train", limit_train)
  test_texts, test_labels = imdb_text.load_split(data_dir, "test", limit_test)
  train_tokens = tokenize(train_texts)
  vocab = build_vocab(train_tokens, vocab_size)
  full = Reviews(*encode(train_tokens, vocab, maxlen), train_labels)
  test = Reviews(*encode(tokenize(test_texts), vocab, maxlen), test_labels)
  return full, test, vocab


def _encoded(data_dir, cache_dir, **settings):
  """(all training reviews, test reviews, vocabulary): from the cache entry for
  `settings` when there is one, else read, encoded and written there."""
  found = name = None
  if cache_dir:
    imdb_text.check_data_dir(data_dir)
    name = data_cache.key(imdb_text.data_files(data_dir), **settings)
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
  if not cache_dir:
    return None
  imdb_text.check_data_dir(data_dir)
  name = data_cache.key(imdb_text.data_files(data_dir), **settings)
  if os.path.exists(os.path.join(cache_dir, name + ".npz")):
    return None
  job = json.dumps({"data_dir": os.path.abspath(data_dir),
                    "cache_dir": os.path.abspath(cache_dir), **settings})
  # run as a module from the checkout, as the trainer itself runs
  return subprocess.Popen([sys.executable, "-m", "examples.imdb.input_pipeline", job],
                          cwd=CHECKOUT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":  # the process `read_in_background` starts
  _encoded(**json.loads(sys.argv[1]))
