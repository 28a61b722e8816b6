"""Bidirectional layers: the carries of both directions and their validation.

A bidirectional layer runs a forward cell from t = 0 and a backward cell from each
sequence's last valid step down to t = 0 (`scan_layer(..., reverse=True)` with `lengths`:
the padding, scanned first, leaves the carry untouched, so the backward direction starts
exactly at t = lengths[b] - 1, the per-sequence reversal of PyTorch's packed sequences and
Flax's `seq_lengths`). Its output is [forward | backward] along the features, and its
carry the pair (forward carry, backward carry). With segment resets, the backward
direction restarts where a segment ends, before the step whose successor starts a new one.
"""

import jax
import jax.numpy as jnp

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.core.types import LSTMState
from deeprnn_jax._src.layers.base import Layer

DIRECTIONS = ("fwd", "bwd")


def initial_carries(cell, batch_size, dtype):
  """Zeros for both directions: (forward carry, backward carry)."""
  return (cell.initial_carry(batch_size, dtype), cell.initial_carry(batch_size, dtype))


def check_state(state, cells, batch):
  """Returns a bidirectional stack's `initial_state` as a tuple of pairs, or raises."""
  if not isinstance(state, (tuple, list)) or isinstance(state, LSTMState):
    raise TypeError(f"initial_state: expected a tuple with one (forward, backward) pair of "
                    f"carries per layer ({len(cells)} layers), got {type(state).__name__}")
  if len(state) != len(cells):
    raise ValueError(f"initial_state: expected {len(cells)} entries (one per layer), "
                     f"got {len(state)}")
  out = []
  for l, (pair, cell) in enumerate(zip(state, cells)):
    if not isinstance(pair, (tuple, list)) or isinstance(pair, LSTMState) or len(pair) != 2:
      raise TypeError(f"initial_state[{l}]: expected a pair (forward carry, backward carry) "
                      f"for a bidirectional layer, got {type(pair).__name__}")
    carries = []
    for d, carry in enumerate(pair):
      try:
        (carry,) = checks.check_initial_state((carry,), (cell,), batch)
      except (TypeError, ValueError) as e:
        raise type(e)(str(e).replace("initial_state[0]", f"initial_state[{l}][{d}]")) from None
      carries.append(carry)
    out.append(tuple(carries))
  return tuple(out)


def segment_ends(resets):
  """Forward restarts [T, B] -> backward ones: the backward direction restarts before step
  t when step t + 1 starts a segment (t = T - 1 starts from the initial carry anyway)."""
  return jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])], axis=0)


def bidirectional(layer: Layer) -> Layer:
  """`layer` run forward and backward over time: params {"fwd": ..., "bwd": ...}, output
  [forward | backward] [T, B, 2 * width], carry (forward carry, backward carry)."""

  def init(key, in_width, dtype):
    return {d: layer.init(k, in_width, dtype)
            for d, k in zip(DIRECTIONS, jax.random.split(key))}

  def run(params, h, carry, ctx):
    ys, carries = [], []
    for d, name in enumerate(DIRECTIONS):
      resets = ctx.resets if d == 0 or ctx.resets is None else segment_ends(ctx.resets)
      y, c = layer.run(params[name], h, carry[d], ctx._replace(direction=d, resets=resets))
      ys.append(y)
      carries.append(c)
    return jnp.concatenate(ys, axis=-1), tuple(carries)  # [T, B, 2H]

  def step(params, carry, x, ctx):
    raise ValueError("step: a bidirectional stack reads each sequence from its end, so "
                     "it cannot run one step at a time; expected bidirectional=False, "
                     "got bidirectional=True")

  def initial_carry(batch_size, dtype):
    return initial_carries(layer, batch_size, dtype)

  return Layer(init=init, run=run, step=step, initial_carry=initial_carry,
               width=2 * layer.width, cell=layer.cell, needs_key=layer.needs_key,
               directions=2)
