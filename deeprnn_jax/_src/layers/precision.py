"""The precision wrapper: a layer whose cell computes in the call's state dtype.

The policy itself (which dtype for what) is `core/dtypes.py`; this wrapper applies it to
a given carry, which keeps its own dtype (e.g. a bf16 initial state under bf16 compute).
"""

import jax
import jax.numpy as jnp

from deeprnn_jax._src.core.dtypes import cast_floating
from deeprnn_jax._src.core.types import Cell
from deeprnn_jax._src.layers.base import Layer, with_cell_transform


def keep_carry_dtype(cell: Cell, compute_dtype, carry) -> Cell:
  """`cell` computing each step in `compute_dtype` (the dtype of its biases: the state
  dtype) while `carry` keeps its own dtype, e.g. a bf16 initial state a user passed.

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

  return cell._replace(recur=recur, step=step, fast_rule=None)  # the rule is one-dtype


def with_precision(layer: Layer) -> Layer:
  """`layer` whose cell computes in the state dtype (`ctx.state_dtype`) whatever the
  dtype of the carry it is given (e.g. a bf16 initial state), which keeps its own."""
  return with_cell_transform(
      layer, lambda cell, params, carry, ctx: (keep_carry_dtype(cell, ctx.state_dtype, carry),
                                               params))
