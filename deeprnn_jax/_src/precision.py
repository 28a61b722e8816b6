"""Mixed precision: the maths in a compute dtype, parameters and carries in their own.

The policy of `stacked_rnn(..., compute_dtype=)`: parameters are stored in their own dtype
(float32) and cast to the compute dtype inside `apply`, so their gradients come back in
float32; inputs and every activation are in the compute dtype; the carry is kept between
time steps in the state dtype (the wider of the parameter and compute dtypes), each step
casting it to the compute dtype on the way in and back on the way out.
"""

import jax
import jax.numpy as jnp

from deeprnn_jax._src.base import Cell


def cast_floating(tree, dtype):
  """Every floating leaf of `tree` cast to `dtype` (a no-op where it already is)."""
  def cast(a):
    return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

  return jax.tree.map(cast, tree)


def first_floating_dtype(tree, default=jnp.float32):
  """The dtype of the first floating leaf of `tree` (the parameters' dtype)."""
  for leaf in jax.tree.leaves(tree):
    if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
      return jnp.dtype(leaf.dtype)
  return jnp.dtype(default)


def state_dtype(param_dtype, compute_dtype):
  """The dtype a stack keeps its state in: the wider of the two (float32 for 16-bit pairs).

  Written out rather than `jnp.promote_types`, which strict dtype promotion refuses for
  bfloat16 and float32.
  """
  a, b = jnp.dtype(param_dtype), jnp.dtype(compute_dtype)
  if a == b:
    return a
  bits_a, bits_b = jnp.finfo(a).bits, jnp.finfo(b).bits
  if bits_a == bits_b:  # float16 and bfloat16: neither holds the other
    return jnp.dtype(jnp.float32)
  return a if bits_a > bits_b else b


def keep_carry_dtype(cell: Cell, compute_dtype, carry) -> Cell:
  """`cell` computing each step in `compute_dtype` while `carry` keeps its own dtype.

  Returns `cell` itself when every floating leaf of `carry` is already in
  `compute_dtype`, so that the common case runs (and traces) the cell unchanged.
  """
  dtypes = {jnp.dtype(a.dtype) for a in jax.tree.leaves(carry)
            if jnp.issubdtype(a.dtype, jnp.floating)}
  if dtypes <= {jnp.dtype(compute_dtype)}:
    return cell

  def recur(params, carry, xp):
    new_carry, y = cell.recur(params, cast_floating(carry, compute_dtype), xp)
    return jax.tree.map(lambda n, o: n.astype(o.dtype), new_carry, carry), y

  def step(params, carry, x):
    return recur(params, carry, cell.project(params, x))

  return cell._replace(recur=recur, step=step)
