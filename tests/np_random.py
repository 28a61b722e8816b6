"""Random test inputs drawn with NumPy, shaped by `jax.eval_shape`: nothing to compile.

On a busy CPU every eager JAX op with a new shape costs a compilation (a tenth of a second
or more); tests that only need random numbers draw them here instead.
"""

import jax
import jax.numpy as jnp
import numpy as np


def normal(shape, seed=0, scale=1.0):
  """A float32 array of N(0, scale^2) draws."""
  return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), jnp.float32)


def like(tree, seed=0, scale=0.5):
  """Random normal leaves in the shapes and dtypes of `tree` (arrays or ShapeDtypeStructs)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(scale * rng.normal(size=a.shape), a.dtype), tree)


def params(model, seed=0, scale=0.4):
  """Random parameters for a `stacked_rnn`, every leaf (biases, layer-norm gains) included."""
  return like(jax.eval_shape(model.init, jax.random.key(0)), seed, scale)
