"""The scan time loop: `lax.scan` (fast), its remat form, and a Python loop (reference).

Both are time-major: xs [T, B, F] -> ys [T, B, H]. With `lengths` [B], step t of sequence
b is valid when t < lengths[b]; past it the carry is frozen and the output is zero, so
the final carry is the carry at the last valid step.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src.core import masking
from deeprnn_jax._src.core import sharding
from deeprnn_jax._src.core.options import ANY
from deeprnn_jax._src.core.types import Cell, TimeLoop
from deeprnn_jax._src.core.masking import mask_step as _mask_step
from deeprnn_jax._src.loops import custom_jvp
from deeprnn_jax._src.loops import tuning


def scan_layer(cell: Cell, params, xs, carry, lengths=None, *, reverse=False, unroll=1,
               fast_grad=None, hoist=None, resets=None):
  """Runs `cell` over time with `lax.scan`.

  Each step's input projection `x_t @ w_ih + b` (`cell.project`) runs either inside the
  loop, one [B, F] x [F, G*H] matmul per step, or hoisted before it, one [T*B, F] matmul
  for all steps (then the loop runs `cell.recur`). On the CPU the loop's small matmuls
  beat the hoisted one at H >= ~32, whose fresh [T, B, G*H] buffer costs more in memory
  traffic and page faults (GRU training step 1.16-1.41x, benchmarks/NOTES.md v9), and
  lose to it at small H, where the loop's per-step op count decides (`tuning.py`).

  Args:
    cell: the layer's Cell.
    params: its parameters.
    xs: inputs [T, B, F] (time-major).
    carry: initial carry (h [B, H] or LSTMState).
    lengths: optional int [B]; steps t >= lengths[b] leave sequence b untouched.
    reverse: scan from t = T-1 down to 0 (over the whole padded axis).
    unroll: passed to `lax.scan`.
    fast_grad: True: for a cell that declares a fast rule (the plain RNN, LSTM and GRU),
      differentiate through its custom JVP, which keeps the weight gradients out of the
      backward loop (`custom_jvp.py`; same numbers; it projects inside its loop, so it
      takes precedence over `hoist`). None (default): only where the rule measured
      faster on this backend at about this width (`tuning.py`). False, and
      cells without a rule (or one a wrapper dropped): autodiff of the plain scan.
    hoist: True: project all steps before the loop; False: inside it; None (default):
      hoisted where that measured faster on this backend at about this width
      (`tuning.py`). Same numbers up to the matmuls' summation order.
    resets: optional bool [T, B]: before step t, rows where resets[t] holds restart from
      `carry` (segment resets; autodiff of the plain scan, projecting in the loop).

  Returns:
    (final carry, ys [T, B, H]).
  """
  if resets is not None:
    return _scan_with_resets(cell, params, xs, carry, lengths, resets, reverse, unroll)
  wanted = fast_grad or (fast_grad is None
                        and tuning.prefers_fast(cell.kind, width=cell.hidden_size))
  if wanted and custom_jvp.applies(cell.fast_rule, params, carry, xs[0]):
    return custom_jvp.recurrence(cell.fast_rule, params, carry, xs, lengths, reverse=reverse,
                                 unroll=unroll)
  if hoist or (hoist is None and tuning.prefers_hoisted(
      cell.kind, width=cell.hidden_size, input_size=xs.shape[-1])):
    xs, advance = cell.project(params, xs), cell.recur  # [T, B, G*H]
  else:
    advance = cell.step
  if lengths is None:
    body = lambda c, x_t: advance(params, c, x_t)
    return lax.scan(body, carry, xs, reverse=reverse, unroll=unroll)

  def masked_body(c, inp):
    x_t, t = inp
    new_c, y = advance(params, c, x_t)
    return _mask_step(t < lengths, new_c, c, y)

  steps = jnp.arange(xs.shape[0], dtype=lengths.dtype)
  return lax.scan(masked_body, carry, (xs, steps), reverse=reverse, unroll=unroll)


def _scan_with_resets(cell, params, xs, carry, lengths, resets, reverse, unroll,
                      initial=None):
  """The plain scan from `carry`, rows restarting from `initial` (default: `carry`) where
  `resets` [T, B] holds."""
  initial = carry if initial is None else initial
  steps = jnp.arange(xs.shape[0], dtype=jnp.int32)

  def body(c, inp):
    x_t, t, reset_t = inp
    new_c, y = cell.step(params, masking.restart(reset_t, initial, c), x_t)
    if lengths is None:
      return new_c, y
    return _mask_step(t < lengths, new_c, c, y)  # past the length even a reset is undone

  return lax.scan(body, carry, (xs, steps, resets), reverse=reverse, unroll=unroll)


def remat_chunk(time: int) -> int:
  """The default chunk of `remat_scan_layer`: the divisor of `time` nearest sqrt(time).

  Memory then goes as time / chunk saved carries plus chunk steps of residuals, both
  about sqrt(time) (Chen et al. 2016, "Training deep nets with sublinear memory cost").
  """
  divisors = [d for d in range(1, time + 1) if time % d == 0]
  return min(divisors, key=lambda d: (abs(d - time**0.5), d))


def remat_scan_layer(cell: Cell, params, xs, carry, lengths=None, *, reverse=False,
                     unroll=1, chunk=None, resets=None):
  """`scan_layer` that keeps only every chunk-th carry for the backward pass.

  Time is cut into chunks of `chunk` steps (which must divide T); each chunk runs under
  `jax.checkpoint`, so the backward pass recomputes one chunk's forward at a time from
  its saved starting carry. Same numbers and gradients as `scan_layer`; about one more
  forward pass of time.

  Args:
    cell, params, xs, carry, lengths, reverse, unroll: as in `scan_layer`.
    chunk: steps per checkpointed chunk; default `remat_chunk(T)`.

  Returns:
    (final carry, ys [T, B, H]).
  """
  T = xs.shape[0]
  chunk = remat_chunk(T) if chunk is None else chunk
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1 or T % chunk:
    raise ValueError(f"chunk: expected a positive int dividing the time axis ({T}), "
                     f"got {chunk!r}")

  initial = carry

  @jax.checkpoint
  def run_chunk(c, inp):
    x, start, r = inp
    local = None if lengths is None else lengths - start  # t < lengths - start, t local
    if r is None:
      return scan_layer(cell, params, x, c, local, reverse=reverse, unroll=unroll)
    # a reset restarts from the layer's initial carry, not the chunk's
    return _scan_with_resets(cell, params, x, c, local, r, reverse, unroll, initial)

  xs_c = xs.reshape((T // chunk, chunk) + xs.shape[1:])  # [T/chunk, chunk, B, F]
  starts = jnp.arange(0, T, chunk, dtype=jnp.int32)
  resets_c = None if resets is None else resets.reshape((T // chunk, chunk) + resets.shape[1:])
  carry, ys = lax.scan(run_chunk, carry, (xs_c, starts, resets_c), reverse=reverse)
  return carry, ys.reshape((T,) + ys.shape[2:])  # [T, B, H]


def loop_layer(cell: Cell, params, xs, carry, lengths=None, *, reverse=False, resets=None):
  """Reference for `scan_layer`: a plain Python loop of `cell.step` over time."""
  T = xs.shape[0]
  ys = [None] * T
  initial = carry
  order = range(T - 1, -1, -1) if reverse else range(T)
  for t in order:
    start = carry if resets is None else masking.restart(resets[t], initial, carry)
    new_carry, y = cell.step(params, start, xs[t])
    if lengths is not None:
      new_carry, y = _mask_step(t < lengths, new_carry, carry, y)
    carry, ys[t] = new_carry, y
  return carry, jnp.stack(ys)


def _make(options):
  return sharding.per_device(functools.partial(
      remat_scan_layer if options.remat else scan_layer, unroll=options.unroll))


SCAN = TimeLoop("scan", _make, supports=ANY)
