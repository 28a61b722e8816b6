"""Dropout for stacks: fresh masks per element, one mask per sequence, recurrent dropout.

Between layers, `elementwise` draws a new mask for every time step (PyTorch's `dropout`);
`sequence_mask` draws one mask per sequence [batch, features] that every time step reuses,
the variational dropout of Gal & Ghahramani 2016 ("A Theoretically Grounded Application of
Dropout in Recurrent Neural Networks"). `with_recurrent_mask` applies such a mask to the
hidden state that feeds the recurrence, h_{t-1} @ w_hh -> (h_{t-1} * m) @ w_hh, as Keras'
`recurrent_dropout` does, without touching the cell's maths: the cell is wrapped.
"""

import jax
import jax.numpy as jnp

from deeprnn_jax._src.base import Cell, LSTMState


def elementwise(x, key, rate):
  """Inverted dropout with a fresh mask for every element of x (every time step too)."""
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def sequence_mask(key, rate, batch, width, dtype):
  """One inverted-dropout mask per sequence, [batch, width]: 0 or 1 / (1 - rate)."""
  keep = jax.random.bernoulli(key, 1.0 - rate, (batch, width))
  return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


def with_recurrent_mask(cell: Cell, params, mask):
  """`cell` and `params` rewritten so that the recurrence reads (h * mask) @ w_hh.

  Args:
    cell: the layer's Cell.
    params: its parameters.
    mask: [batch, hidden] from `sequence_mask`, the same at every time step.

  Returns:
    (cell, params) to run in its place; the carry keeps the unmasked h.
  """
  if cell.kind == "gru":
    # The GRU also reads h in h_t = (1 - z) * n + z * h_{t-1}, which must see it unmasked
    # (masking it would drop memory, Semeniuta et al. 2016): mask the rows of w_hh
    # instead, one masked copy per sequence, made once outside the time scan.
    w_hh = params["w_hh"]
    params = dict(params, w_hh=mask[:, :, None].astype(w_hh.dtype) * w_hh[None])  # [B, H, 3H]
    axes = {name: 0 if name == "w_hh" else None for name in params}
    recur = jax.vmap(cell.recur, in_axes=(axes, 0, 0))
  else:  # the RNN and the LSTM read h only through h @ w_hh

    def recur(p, carry, xp):
      if isinstance(carry, LSTMState):
        return cell.recur(p, carry._replace(h=carry.h * mask.astype(carry.h.dtype)), xp)
      return cell.recur(p, carry * mask.astype(carry.dtype), xp)

  def step(p, carry, x):
    return recur(p, carry, cell.project(p, x))

  # the cell's fast rule computes the unmasked recurrence: the wrapped cell has none
  return cell._replace(recur=recur, step=step, fast_rule=None), params
