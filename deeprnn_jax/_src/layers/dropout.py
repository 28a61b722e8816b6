"""Dropout for stacks: fresh masks per element, one mask per sequence, recurrent dropout.

Between layers, `elementwise` draws a new mask for every time step (PyTorch's `dropout`);
`sequence_mask` draws one mask per sequence [batch, features] that every time step reuses,
the variational dropout of Gal & Ghahramani 2016 ("A Theoretically Grounded Application of
Dropout in Recurrent Neural Networks"). `with_recurrent_mask` applies such a mask to the
hidden state that feeds the recurrence, h_{t-1} @ w_hh -> (h_{t-1} * m) @ w_hh, as Keras'
`recurrent_dropout` does, without touching the cell's maths: the cell is wrapped.

`input_dropout` and `recurrent_dropout` are the layer wrappers that `stacked_rnn` uses:
the layer's PRNG key (`ctx.key`, `jax.random.split(key, L)[l]` for layer l) draws its
input mask, and `fold_in(ctx.key, 1 + direction)` its recurrent mask. Layer 0 reads the
stack's inputs, which no dropout touches.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src.core import sharding
from deeprnn_jax._src.core.types import Cell
from deeprnn_jax._src.layers.base import Layer, with_cell_transform


LEVELS = 1 << 16  # a mask element compares one 16-bit half of a 32-bit random word


def keep_mask(key, rate: float, shape, like=None):
  """Where inverted dropout of `rate` keeps its input: (keep bool [shape], scale).

  Element i is kept iff u_i >= k, k = round(rate * 2**16), so with probability 1 - q,
  q = k / 2**16 (the rate to 1/65536), and kept elements are scaled by 1 / (1 - q), which
  keeps the expectation exactly. The u_i are 16-bit halves of uint32 words from
  `jax.random.bits(key, shape[:-1] + (ceil(shape[-1] / 2),))`: word j of a row gives
  elements 2j (its low half) and 2j + 1 (its high half), as a little-endian bitcast
  splits it. That is half the random words `jax.random.bernoulli` draws, and no float
  conversion: 3.7x faster on one CPU core for the IMDB trainer's [128, 400, 64] word
  vectors (benchmarks/NOTES.md v17).
  With `like` (an array split over Explicit mesh axes), the words are drawn split as its
  leading axes are, each device drawing its own part (the same values as unsplit).
  """
  k = round(float(rate) * LEVELS)
  if not 0 <= k < LEVELS:
    raise ValueError(f"rate: expected a dropout rate in [0, 1), got {rate!r}")
  dims = tuple(shape) or (1,)
  words = jax.random.bits(key, dims[:-1] + (-(-dims[-1] // 2),), jnp.uint32,
                          out_sharding=_leading_split(like, len(dims)))
  halves = lax.bitcast_convert_type(words, jnp.uint16)  # [..., ceil(F / 2), 2]
  u = halves.reshape(dims[:-1] + (-1,))[..., :dims[-1]].reshape(tuple(shape))  # [..., F]
  return u >= k, LEVELS / (LEVELS - k)


def _leading_split(like, ndim):
  """A spec splitting a draw [..., words] as `like`'s leading axes are, or None."""
  spec = None if like is None else getattr(jax.typeof(like).sharding, "spec", None)
  if spec is None or not any(tuple(spec)[:ndim - 1]):
    return None
  lead = (tuple(spec) + (None,) * ndim)[:ndim - 1]
  return jax.sharding.PartitionSpec(*lead, None)


def elementwise(x, key, rate):
  """Inverted dropout with a fresh mask for every element of x (every time step too);
  the mask is `keep_mask(key, rate, x.shape, like=x)`."""
  keep, scale = keep_mask(key, rate, x.shape, like=x)
  return jnp.where(keep, x * scale, 0).astype(x.dtype)


def sequence_mask(key, rate, batch, width, dtype):
  """One inverted-dropout mask per sequence, [batch, width]: 0 or 1 / (1 - q)
  (`keep_mask`'s draw and q)."""
  keep, scale = keep_mask(key, rate, (batch, width))
  return jnp.where(keep, scale, 0.0).astype(dtype)


class MaskedParams(NamedTuple):
  """A cell's params with the recurrent-dropout mask [batch, hidden] its recurrence reads."""
  params: Any
  mask: jax.Array


def with_recurrent_mask(cell: Cell, params, mask):
  """`cell` and `params` rewritten so that the recurrence reads (h * mask) @ w_hh.

  Args:
    cell: the layer's Cell.
    params: its parameters.
    mask: [batch, hidden] from `sequence_mask`, the same at every time step.

  Returns:
    (cell, params) to run in its place; the carry keeps the unmasked h.
  """
  if cell.recurrent_mask == "weights":
    # The GRU also reads h in h_t = (1 - z) * n + z * h_{t-1}, which must see it unmasked
    # (masking it would drop memory, Semeniuta et al. 2016): mask the rows of w_hh
    # instead, one masked copy per sequence, made once outside the time scan.
    w_hh = params["w_hh"]
    params = dict(params, w_hh=mask[:, :, None].astype(w_hh.dtype) * w_hh[None])  # [B, H, 3H]
    axes = {name: 0 if name == "w_hh" else None for name in params}
    recur = jax.vmap(cell.recur, in_axes=(axes, 0, 0))
  else:  # "carry": the cell reads h only through h @ w_hh (the RNN, the LSTM)
    # the mask travels with the params, not in a closure, so that a time loop running
    # each device's rows on its own (`sharding.per_device`) gets the rows it runs
    params = MaskedParams(params, mask)

    def recur(p, carry, xp):
      m = p.mask
      if hasattr(carry, "h"):  # LSTMState, or a user cell's named carry
        return cell.recur(p.params, carry._replace(h=carry.h * m.astype(carry.h.dtype)), xp)
      return cell.recur(p.params, carry * m.astype(carry.dtype), xp)

  project = cell.project if cell.recurrent_mask == "weights" else (
      lambda p, x: cell.project(p.params, x))

  def step(p, carry, x):
    return recur(p, carry, project(p, x))

  # the cell's fast rule computes the unmasked recurrence: the wrapped cell has none
  return cell._replace(project=project, recur=recur, step=step, fast_rule=None), params


def input_dropout(layer: Layer, rate: float, variational: bool = False) -> Layer:
  """`layer` reading its input through dropout of `rate` in training (a key given),
  one mask per element and step, or with `variational` one per sequence [B, F]."""

  def dropped(h, key):  # h [T, B, F]
    _, B, F = h.shape
    if variational:  # one mask per sequence, reused at every step
      return h * sequence_mask(key, rate, B, F, h.dtype)[None]
    return elementwise(h, key, rate)

  def run(params, h, carry, ctx):
    x = h if ctx.key is None else jnp.where(ctx.index > 0, dropped(h, ctx.key), h)
    return layer.run(params, x, carry, ctx)

  def step(params, carry, x, ctx):
    return layer.step(params, carry, x if ctx.in_mask is None else x * ctx.in_mask, ctx)

  def draw_input_mask(key, shape, dtype):
    if variational:
      return jnp.broadcast_to(sequence_mask(key, rate, shape[1], shape[2], dtype)[None],
                              shape)
    return elementwise(jnp.ones(shape, dtype), key, rate)

  return layer._replace(run=run, step=step, draw_input_mask=draw_input_mask, needs_key=True)


def recurrent_dropout(layer: Layer, rate: float) -> Layer:
  """`layer` whose recurrence reads (h * m) @ w_hh in training, m [B, H] drawn per
  sequence and direction from `fold_in(ctx.key, 1 + ctx.direction)`."""

  def transform(cell, params, carry, ctx):
    if ctx.key is None:
      return cell, params
    rows = jax.tree.leaves(carry)[0]
    mask = sequence_mask(jax.random.fold_in(ctx.key, 1 + ctx.direction), rate,
                         rows.shape[0], layer.width, ctx.compute_dtype)
    mask = sharding.follow_batch(mask, sharding.batch_axes(rows, 0), 0)  # split as the rows
    return with_recurrent_mask(cell, params, mask)

  return with_cell_transform(layer, transform)._replace(needs_key=True)
