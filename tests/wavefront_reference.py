"""A group of equal cells stepped along a wavefront, and its Python-loop reference: the
tests' handle on `schedules.wavefront.wavefront_steps` below the layer wrappers."""

import jax
import jax.numpy as jnp

from deeprnn_jax._src.core.masking import mask_step as _mask_step
from deeprnn_jax._src.schedules.wavefront import _group_size, wavefront_steps


def wavefront_group(cell, params, h, carries, lengths=None, *, in_masks=None,
                    residual_from=None, unroll=1, keep_all=False):
  """Runs a group of n >= 2 equal unidirectional layers (input width = hidden width H).

  Args:
    cell: the layers' Cell (every layer of the group has the same one).
    params: the group's params, every leaf stacked on a leading axis of n layers.
    h: [T, B, H], the input sequence of the group's first layer (time-major).
    carries: the n layers' initial carries stacked [n, ...] (h [n, B, H] or LSTMState).
    lengths: optional int [B]; steps t >= lengths[b] leave row b's carry untouched and
      give a zero cell output.
    in_masks: None or [n, T, B, H], multiplied onto each layer's input (the dropout
      between layers; ones for a layer without it).
    residual_from: None or bool [n]: layer j's output is its cell's output plus its
      undropped input where residual_from[j].
    unroll: passed to the wave `lax.scan`.
    keep_all: also return every layer's output sequence.

  Returns:
    (top layer's output [T, B, H], final carries [n, ...], every layer's output
    [n, T, B, H] or None when not keep_all).
  """
  n = _group_size(params)
  residual = jnp.zeros((n,), bool) if residual_from is None else residual_from

  def step(p, carry, x, in_mask, valid, res):
    new_carry, y = cell.step(p, carry, x if in_mask is None else x * in_mask)
    new_carry, y = _mask_step(valid, new_carry, carry, y)
    return new_carry, y if residual_from is None else y + jnp.where(res, x, 0)

  return wavefront_steps(step, params, h, carries, lengths, per_wave=in_masks,
                         per_layer=residual, unroll=unroll, keep_all=keep_all)




def wavefront_group_reference(cell, params, h, carries, lengths=None, *,
                              in_masks=None, residual_from=None, keep_all=False):
  """Reference for `wavefront_group`: Python loops over waves and layers, `cell.step`."""
  T = h.shape[0]
  n = _group_size(params)
  per_layer = [jax.tree.map(lambda a, j=j: a[j], params) for j in range(n)]
  carry = [jax.tree.map(lambda a, j=j: a[j], carries) for j in range(n)]
  outs = [None] * n  # each layer's output at the previous wave
  ys = [[None] * T for _ in range(n)]
  for s in range(T + n - 1):
    new_outs = list(outs)
    for j in range(n):
      t = s - j
      if not 0 <= t < T:
        continue
      x = h[t] if j == 0 else outs[j - 1]
      x_in = x if in_masks is None else x * in_masks[j, t]
      new_carry, y = cell.step(per_layer[j], carry[j], x_in)
      if lengths is not None:
        new_carry, y = _mask_step(t < lengths, new_carry, carry[j], y)
      if residual_from is not None and bool(residual_from[j]):
        y = y + x
      carry[j], new_outs[j], ys[j][t] = new_carry, y, y
    outs = new_outs
  all_ys = jnp.stack([jnp.stack(y) for y in ys])  # [n, T, B, H]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *carry)
  return all_ys[-1], stacked, (all_ys if keep_all else None)
