"""IMDB text as one token stream for language modelling, cut into continuous batches.

The 50,000 unlabelled reviews (split "unsupervised") are the training text; the labelled
test split gives the held-out text: its first `val_reviews` reviews for validation, the
next `test_reviews` for test. Tokens are words (examples/common/imdb_text.py's: lower-cased, HTML
line breaks removed) or characters (the text as written, HTML line breaks as spaces), as
`level` says (examples/lm/levels.py); every review ends with <eos>, so the streams run
across reviews as PTB's run across sentences. The vocabulary is the `vocab - 2` most
frequent tokens of the training text, plus <eos> (id 0) and <unk> (id 1) for every other
one.

Batches are the classic ones (Zaremba et al. 2014; PyTorch's word_language_model): the
stream of n ids is cut into B contiguous streams, a [B, n // B] array whose row b is
the b-th piece of the text, and the model reads it left to right in chunks of `bptt`
steps, carrying each row's state into the next chunk. Nothing is shuffled: row b of one
chunk continues where row b of the previous chunk stopped.
"""

import collections
import itertools
import time
from typing import Dict, List, NamedTuple, Sequence

import numpy as np

from examples.common import imdb_text
from examples.lm import levels

EOS, UNK = levels.EOS, levels.UNK
SPECIALS = ("<eos>", "<unk>")
TRAIN_SPLIT, HELD_OUT_SPLIT = "unsupervised", "test"
tokenize = imdb_text.tokenize


class TextTooShort(ValueError):
  """Too few tokens for the streams asked for; the message says how many were needed."""


class Corpus(NamedTuple):
  """Token ids int32 [n] of each part, and the vocabulary both ways."""

  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  vocab: Dict[str, int]  # word -> id, <eos> and <unk> included
  words: List[str]  # id -> word


def _by_frequency(counts, vocab_size):
  """The `vocab_size - 2` most frequent tokens, ids from 2 by rank (ties: first seen)."""
  return {w: i + 2 for i, (w, _) in
          enumerate(collections.Counter(counts).most_common(vocab_size - 2))}


def build_vocab(token_lists: Sequence[Sequence[str]], vocab_size: int) -> Dict[str, int]:
  """<eos> 0, <unk> 1, then the `vocab_size - 2` most frequent words (ties: first seen)."""
  return vocab_of(collections.Counter(itertools.chain.from_iterable(token_lists)), vocab_size)


def vocab_of(counts: Dict[str, int], vocab_size: int) -> Dict[str, int]:
  """<eos> 0, <unk> 1, then the `vocab_size - 2` most frequent of `counts`' tokens."""
  if vocab_size < 3:
    raise ValueError(f"vocab_size: expected at least 3 (<eos> and <unk> are 2 of the ids), "
                     f"got {vocab_size}")
  return {**dict(zip(SPECIALS, (EOS, UNK))), **_by_frequency(counts, vocab_size)}


encode = levels.encode_tokens


def batchify(ids: np.ndarray, batch_size: int, what: str = "text") -> np.ndarray:
  """The stream [n] as `batch_size` contiguous streams [batch, n // batch]; the last
  n % batch ids are dropped. Row b is ids[b * N:(b + 1) * N]."""
  n = len(ids) // batch_size
  if n < 2:  # one input and its target at least
    raise TextTooShort(f"{what}: {len(ids)} tokens cannot fill {batch_size} streams of at "
                     f"least 2 tokens; expected at least {2 * batch_size} (use more text or "
                     f"a smaller batch size)")
  return ids[:batch_size * n].reshape(batch_size, n)  # [B, N]


def num_chunks(steps: int, bptt: int) -> int:
  return -(-steps // bptt)


def segments(steps: int, bptt: int, chunks_per_call: int):
  """(start, stop) time steps of the calls an epoch of `steps` steps is trained in: each
  `chunks_per_call` chunks of `bptt` steps (the last call, and its last chunk, shorter)."""
  size = bptt * chunks_per_call
  return [(s, min(s + size, steps)) for s in range(0, steps, size)]


def chunk(data: np.ndarray, start: int, bptt: int) -> dict:
  """The chunk of `data` [B, N] starting at step `start`: inputs and targets [B, bptt]
  (targets are the next ids), zero-padded past the text's end, and `length`, the number
  of valid steps (the same for every row: the streams are equally long)."""
  stop = min(start + bptt, data.shape[1] - 1)
  pad = [(0, 0), (0, bptt - (stop - start))]
  return {"inputs": np.pad(data[:, start:stop], pad),  # [B, K]
          "targets": np.pad(data[:, start + 1:stop + 1], pad),  # [B, K]
          "length": stop - start}


def _read(data_dir: str, split: str, limit: int) -> List[str]:
  return imdb_text.load_split(data_dir, split, limit)[0]


def _train_texts(data_dir: str, limit_tokens: int, level: levels.Level) -> List[str]:
  """Training reviews: all of them, or the first ones holding `limit_tokens` tokens
  (<eos> counted); read in growing slices, as reading all takes seconds."""
  if not limit_tokens:
    return _read(data_dir, TRAIN_SPLIT, 0)
  count = limit_tokens // level.per_review + 16
  while True:
    texts = _read(data_dir, TRAIN_SPLIT, count)
    ends = np.cumsum(level.lengths(texts))
    if ends[-1] >= limit_tokens or len(texts) < count:  # enough, or the whole split
      return texts[:int(np.searchsorted(ends, limit_tokens)) + 1]
    count *= 2


def load(data_dir: str, vocab_size: int, limit_train_tokens: int = 0,
         val_reviews: int = 5000, test_reviews: int = 5000,
         vocab_text: str = "train", level: str = "word") -> Corpus:
  """Reads and encodes the corpus.

  Args:
    data_dir: a tfds data dir holding a prepared imdb_reviews.
    vocab_size: ids in the vocabulary, <eos> and <unk> included.
    limit_train_tokens: train on the first N tokens of the training stream (0: all,
      about 11.8 million words or 65 million characters).
    val_reviews, test_reviews: how many held-out reviews each part has.
    vocab_text: "train", the vocabulary of the reviews trained on; or "corpus", that of the
      whole training split whatever `limit_train_tokens` is, so that runs of different
      lengths share one vocabulary and their perplexities compare.
    level: "word" or "char", what a token is (examples/lm/levels.py).
  """
  if vocab_text not in ("train", "corpus"):
    raise ValueError(f"vocab_text: expected 'train' or 'corpus', got {vocab_text!r}")
  if level not in levels.LEVELS:
    raise ValueError(f"level: expected one of {', '.join(levels.LEVELS)}, got {level!r}")
  tokens = levels.LEVELS[level]
  read_all = vocab_text == "corpus" or not limit_train_tokens
  train = _train_texts(data_dir, 0 if read_all else limit_train_tokens, tokens)
  vocab = vocab_of(tokens.counts(train), vocab_size)
  ids = tokens.encode(train, vocab)
  if limit_train_tokens:
    ids = ids[:limit_train_tokens]
  held_out = _read(data_dir, HELD_OUT_SPLIT, val_reviews + test_reviews)
  words = [w for w, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
  return Corpus(ids, tokens.encode(held_out[:val_reviews], vocab),
                tokens.encode(held_out[val_reviews:val_reviews + test_reviews], vocab),
                vocab, words)


def load_for(cfg: dict) -> Corpus:
  """The corpus of a trainer's configuration, its training text as continuous streams
  [batch, n]; prints what it read (both trainers call it, so they read the same)."""
  data_dir = imdb_text.resolve_data_dir(cfg["data_dir"])
  imdb_text.check_data_dir(data_dir)  # fail fast, before the slow reads
  t0 = time.perf_counter()
  corpus = load(data_dir, cfg["vocab"], cfg["limit_train_tokens"], cfg["val_reviews"],
                cfg["test_reviews"], cfg["vocab_text"], cfg["level"])
  train = batchify(corpus.train, cfg["batch_size"], "training text")
  print(f"IMDB text from {data_dir}: {len(corpus.train)} training tokens as "
        f"{train.shape[0]} streams of {train.shape[1]}, {len(corpus.val)} validation and "
        f"{len(corpus.test)} test tokens, vocabulary {len(corpus.vocab)} "
        f"({time.perf_counter() - t0:.1f}s)", flush=True)
  return corpus._replace(train=train)
