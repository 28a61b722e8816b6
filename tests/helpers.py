"""Small shared helpers for the tests."""

import jax
import numpy as np


def assert_trees_close(a, b, rtol=1e-5, atol=1e-5):
  """Every leaf of `a` equals the matching leaf of `b` at float32 tolerances."""
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb, f"tree structures differ: {ta} vs {tb}"
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               rtol=rtol, atol=atol)


def randomize(params, key, scale=0.5):
  """Random values in every leaf (biases included), so that no leaf is left untested."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [scale * jax.random.normal(k, x.shape, x.dtype)
                                   for k, x in zip(keys, leaves)])
