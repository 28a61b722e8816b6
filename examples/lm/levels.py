"""What a token is: a word (`WORDS`) or a character (`CHARS`), as strategy objects.

A level turns raw review texts into tokens three ways the input pipeline needs: their
`lengths` (tokens per review, its <eos> included), `counts` (token -> occurrences, in
first-seen order for ties) and `encode` (one int32 stream [n], each review followed by
<eos>). Words are examples/common/imdb_text.py's lower-cased words; characters are the
text as written (case and punctuation kept), HTML line breaks as spaces, counted and
encoded through NumPy over code points, as a Python loop over tens of millions of
characters would take minutes.
"""

import collections
import itertools
from typing import Callable, Dict, NamedTuple, Sequence

import numpy as np

from examples.common import imdb_text

EOS, UNK = 0, 1


class Level(NamedTuple):
  """A tokenisation of review texts (see the module docstring)."""

  name: str
  lengths: Callable[[Sequence[str]], np.ndarray]  # texts -> int [n_reviews]
  counts: Callable[[Sequence[str]], Dict[str, int]]  # texts -> {token: count}
  encode: Callable[[Sequence[str], Dict[str, int]], np.ndarray]  # -> int32 [n]
  per_review: int  # about how many tokens a review holds: sizes the first read
  split: Callable[[str], list]  # one text -> its tokens (a prompt to sample from)
  sep: str  # what joins tokens back into text


def _word_counts(texts):
  return collections.Counter(itertools.chain.from_iterable(imdb_text.tokenize(texts)))


def encode_tokens(token_lists: Sequence[Sequence[str]], vocab: Dict[str, int]) -> np.ndarray:
  """One stream int32 [n]: each text's ids followed by <eos>, unknown tokens as <unk>."""
  n = sum(len(t) + 1 for t in token_lists)
  ids = itertools.chain.from_iterable(
      itertools.chain((vocab.get(w, UNK) for w in t), (EOS,)) for t in token_lists)
  return np.fromiter(ids, np.int32, n)


def _word_encode(texts, vocab):
  return encode_tokens(imdb_text.tokenize(texts), vocab)


def _code_points(texts):
  """uint32 [n]: every cleaned text's characters, each text followed by a 0 (its end)."""
  joined = "\0".join(imdb_text.clean(texts)) + "\0"
  return np.frombuffer(joined.encode("utf-32-le"), np.uint32)


def _char_counts(texts):
  codes = _code_points(texts)
  values, first, counts = np.unique(codes[codes > 0], return_index=True, return_counts=True)
  order = np.argsort(first, kind="stable")  # first seen first, as Counter keeps words
  return {chr(values[i]): int(counts[i]) for i in order}


def _char_encode(texts, vocab):
  codes = _code_points(texts)
  chars = [(ord(c), i) for c, i in vocab.items() if len(c) == 1]
  table = np.full(max([int(codes.max()) + 1] + [c + 1 for c, _ in chars]), UNK, np.int32)
  for code, i in chars:
    table[code] = i
  table[0] = EOS  # the end of each review
  return table[codes]


WORDS = Level("word", lambda texts: np.array([len(t) + 1 for t in imdb_text.tokenize(texts)]),
              _word_counts, _word_encode, per_review=200,
              split=lambda text: imdb_text.tokenize([text])[0], sep=" ")
CHARS = Level("char", lambda texts: np.array([len(t) + 1 for t in imdb_text.clean(texts)]),
              _char_counts, _char_encode, per_review=1200,
              split=lambda text: list(imdb_text.clean([text])[0]), sep="")
LEVELS = {level.name: level for level in (WORDS, CHARS)}
