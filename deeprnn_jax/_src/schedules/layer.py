"""The layer schedule (a depth scan over a group of equal layers) and its reference.

A schedule is a `core.types.Schedule`: a strategy that runs a group of n >= 2 equal
layers. "layer" runs them layer after layer, L*T sequential steps, as one compiled
layer body under `lax.scan` over depth, so compile time does not grow with depth; the
reference loops over the layers in Python (for `apply_reference` and the tests).
"""

import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src.core import layout
from deeprnn_jax._src.core.options import ANY
from deeprnn_jax._src.core.types import Schedule


def _depth_scan(layer, params, h, carries, ctx, keys, indices, keep_all):
  """Layer after layer: `lax.scan` over the group's depth, one compiled layer body."""

  def body(h, inp):
    p, carry, k, index = inp
    h, carry = layer.run(p, h, carry, ctx._replace(key=k, index=index))
    return h, (carry, h if keep_all else None)

  h, (finals, seqs) = lax.scan(body, h, (params, carries, keys, indices))
  return h, finals, seqs


LAYER = Schedule("layer", _depth_scan, supports=ANY)


def _per_layer(layer, params, h, carries, ctx, keys, indices, keep_all):
  """The reference: a Python loop over the group's layers (and `ctx.time_loop`, the
  Python loop over time, for `apply_reference`)."""
  finals, seqs = [], []
  count = indices.shape[0]
  per_layer = layout.unstack_carries(params, count)
  for j, (p, carry) in enumerate(zip(per_layer, layout.unstack_carries(carries, count))):
    k = None if keys is None else keys[j]
    h, carry = layer.run(p, h, carry, ctx._replace(key=k, index=int(indices[j])))  # static
    finals.append(carry)
    seqs.append(h)
  return h, layout.stack_carries(finals), jnp.stack(seqs) if keep_all else None


REFERENCE = Schedule("reference", _per_layer, supports=ANY)
