"""Small shared helpers for the tests."""

import os

import jax
import numpy as np
import pytest


def assert_trees_close(a, b, rtol=1e-5, atol=1e-5):
  """Every leaf of `a` equals the matching leaf of `b` at float32 tolerances."""
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb, f"tree structures differ: {ta} vs {tb}"
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               rtol=rtol, atol=atol)


def documented_keep(key, rate, shape):
  """The keep-mask `drnn.keep_mask` documents, re-derived in NumPy from the key's uint32
  words: in each row, word j's low 16 bits decide element 2j and its high 16 bits element
  2j + 1, kept iff >= round(rate * 2**16). Bit arithmetic, not a bitcast, so that the
  documented order is what is checked."""
  shape = tuple(shape)
  dims = shape or (1,)
  words = np.asarray(jax.random.bits(key, dims[:-1] + (-(-dims[-1] // 2),), np.uint32))
  halves = np.stack([words & 0xFFFF, words >> 16], axis=-1)  # [..., words, 2]
  u = halves.reshape(dims[:-1] + (-1,))[..., :dims[-1]].reshape(shape)
  return u >= round(rate * 2**16)


def documented_rate(rate):
  """The dropout rate `drnn.keep_mask` applies: `rate` rounded to 1/65536."""
  return round(rate * 2**16) / 2**16


def randomize(params, key, scale=0.5):
  """Random values in every leaf (biases included), so that no leaf is left untested."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [scale * jax.random.normal(k, x.shape, x.dtype)
                                   for k, x in zip(keys, leaves)])


def import_torch(module_level=False):
  """torch, or a skip of the calling test (or module) where it is not installed.

  Under CI (the CI variable set) a missing torch is a failure, not a skip: `.ci/run`
  installs torch==2.13.0 with the "test" extra, so a skip there would hide lost coverage.
  """
  try:
    import torch
  except ImportError:
    if os.environ.get("CI"):
      pytest.fail("torch is not installed, but CI installs torch==2.13.0 (the 'test' "
                  "extra): the torch parity tests must run", pytrace=False)
    pytest.skip("torch is not installed (pip install torch==2.13.0)",
                allow_module_level=module_level)
  return torch
