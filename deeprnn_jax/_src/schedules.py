"""Schedules: strategies that run a group of equal layers (a depth scan, a wavefront).

A schedule is a `Schedule(name, run_group, check)`:

    run_group(layer, params, h, carries, ctx, keys, indices, keep_all)
        -> (top output [T, B, W], final carries stacked [n, ...], every layer's
            output [n, T, B, W] or None)

for a group of n >= 2 layers with equal shapes (params and carries stacked on a leading
axis of n, keys [n] or None, indices [n] their positions in the stack, h [T, B, F]).
`check(options)` raises if the schedule cannot run a stack built with these options.
A new schedule (a pipeline over devices, say) is a new `Schedule`, not a new branch.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src import layout
from deeprnn_jax._src.wavefront import wavefront_steps


class Schedule(NamedTuple):
  name: str
  run_group: Callable
  check: Callable = lambda options: None


def _depth_scan(layer, params, h, carries, ctx, keys, indices, keep_all):
  """Layer after layer: `lax.scan` over the group's depth, one compiled layer body."""

  def body(h, inp):
    p, carry, k, index = inp
    h, carry = layer.run(p, h, carry, ctx._replace(key=k, index=index))
    return h, (carry, h if keep_all else None)

  h, (finals, seqs) = lax.scan(body, h, (params, carries, keys, indices))
  return h, finals, seqs


LAYER = Schedule("layer", _depth_scan)


def _wavefront(layer, params, h, carries, ctx, keys, indices, keep_all):
  """At wave s layer j handles time s - j: the group's layers step together, T + n - 1
  sequential steps instead of n * T (`wavefront.py`)."""
  in_masks = None
  if keys is not None and layer.draw_input_mask is not None:
    draw = jax.vmap(lambda k: layer.draw_input_mask(k, h.shape, h.dtype))
    # layer 0 reads xs, which no dropout touches
    in_masks = jnp.where((indices > 0)[:, None, None, None], draw(keys), 1)
  n = indices.shape[0]
  resets = None  # every layer restarts at the same times: [n, T, B]
  if ctx.resets is not None:
    resets = jnp.broadcast_to(ctx.resets[None], (n,) + ctx.resets.shape)

  def step(p, carry, x, wave, valid, inp):
    (in_mask, reset), (index, start) = wave, inp
    one = ctx._replace(in_mask=in_mask, valid=valid, index=index, reset=reset, initial=start)
    return layer.step(p, carry, x, one)

  return wavefront_steps(step, params, h, carries, ctx.lengths, per_wave=(in_masks, resets),
                         per_layer=(indices, carries), unroll=ctx.unroll, keep_all=keep_all)


def _check_wavefront(options):
  # it steps unidirectional cells of one scan, unmasked
  for name, ok in (("bidirectional", False), ("recurrent_dropout", 0.0), ("remat", False)):
    if options[name] != ok:
      raise ValueError(f"schedule: 'wavefront' does not support {name}; expected "
                       f"{name}={ok!r}, got {name}={options[name]!r}")


WAVEFRONT = Schedule("wavefront", _wavefront, _check_wavefront)


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


REFERENCE = Schedule("reference", _per_layer)
SCHEDULES = {s.name: s for s in (LAYER, WAVEFRONT)}
