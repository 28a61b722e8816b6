"""A wavefront schedule across depth: all layers of a group step together.

Layer-by-layer, a group of n equal layers runs n time scans of T steps one after the
other, L*T sequential steps in all. Along a wavefront, at wave step s layer j handles
time t = s - j: layer 0 reads x_s, layer j > 0 reads what layer j - 1 produced at the
previous wave (its time t too). Every layer then steps at every wave, so the n cells run
as one `jax.vmap`-batched step (one batched matmul per weight) and the group takes
T + n - 1 sequential steps instead of n * T. The numbers are those of the layer-by-layer
schedule: each (layer, time) cell of the grid is computed once, from the same inputs.

Lengths follow `loops.scan.scan_layer`: step t of row b is valid iff t < lengths[b]; past it
the carry is frozen and the cell's output is zero. A residual layer adds its undropped
input after that masking, as its `run` does.
"""

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src.core import sharding
from deeprnn_jax._src.core.types import Schedule


def _group_size(params) -> int:
  return jax.tree.leaves(params)[0].shape[0]


def _skew(a, n):
  """[n, T, ...] -> [T + n - 1, n, ...] with out[t + j, j] = a[j, t] (zeros elsewhere):
  row s holds what each layer needs at wave s."""
  pad = [(0, 0)] * (a.ndim - 2)
  rows = [jnp.pad(a[j], [(j, n - 1 - j)] + pad) for j in range(n)]  # each [S, ...]
  return jnp.stack(rows, axis=1)


def _unskew(ys, n, T):
  """[T + n - 1, n, ...] -> [n, T, ...], the inverse of `_skew` on the wavefront's cells.

  A gather rather than n slices, so the program does not grow with n.
  """
  j = jnp.arange(n)[:, None]
  return ys[jnp.arange(T)[None, :] + j, j]


def _valid(t, T, lengths, batch):
  """[n, B]: layer j's time t[j] is in [0, T) and, with lengths, before lengths[b]."""
  in_range = (t >= 0) & (t < T)  # [n]
  if lengths is None:
    return jnp.broadcast_to(in_range[:, None], (t.shape[0], batch))
  return in_range[:, None] & (t[:, None] < lengths[None, :])


def wavefront_steps(step, params, h, carries, lengths=None, *, per_wave=None, per_layer=None,
                    unroll=1, keep_all=False):
  """The wavefront over any layer step: the loop of the wavefront schedule.

  Args:
    step: `step(params, carry, x, per_wave, valid, per_layer) -> (carry, y)` of one layer
      and one step (x [B, H], valid bool [B]); it is vmapped over the group's layers.
    params: the group's params, every leaf stacked on a leading axis of n layers.
    h: [T, B, H], the input sequence of the group's first layer (time-major).
    carries: the n layers' initial carries stacked [n, ...] (h [n, B, H] or LSTMState).
    lengths: optional int [B]; steps t >= lengths[b] are invalid (`valid` False).
    unroll: passed to the wave `lax.scan`.
    keep_all: also return every layer's output sequence.
    per_wave: None or a pytree of [n, T, B, ...] arrays (e.g. `in_masks`): layer j's
      entry at its time t reaches its step (zeros where it has none).
    per_layer: a pytree of [n, ...], each layer's entry passed to every step of it
      (default: the layer's position).
  """
  T, B, H = h.shape
  n = _group_size(params)
  S = T + n - 1
  layers = jnp.arange(n, dtype=jnp.int32)
  per_layer = layers if per_layer is None else per_layer
  vstep = jax.vmap(step)  # one batched step of all n layers
  h_waves = jnp.pad(h, [(0, n - 1), (0, 0), (0, 0)])  # layer 0 reads h[s]; nothing later
  waves_in = jax.tree.map(lambda a: _skew(a, n), per_wave)  # each [S, n, B, ...]

  def body(state, inp):
    carry, outs = state  # outs [n, B, H]: each layer's output at the previous wave
    x0, mask, s = inp
    x = jnp.concatenate([x0[None], outs[:-1]])  # [n, B, H], layer j's input
    valid = _valid(s - layers, T, lengths, B)  # [n, B]
    new_carry, y = vstep(params, carry, x, mask, valid, per_layer)
    return (new_carry, y), (y if keep_all else y[-1])

  outs0 = sharding.follow_batch(jnp.zeros((n, B, H), h.dtype), sharding.batch_axes(h, 1), 1)
  waves = jnp.arange(S, dtype=jnp.int32)
  (carry, _), ys = lax.scan(body, (carries, outs0), (h_waves, waves_in, waves), unroll=unroll)
  if not keep_all:
    return ys[n - 1:], carry, None  # the top layer's time t came at wave t + n - 1
  all_ys = _unskew(ys, n, T)
  return all_ys[-1], carry, all_ys


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


# it steps unidirectional cells of one scan, unmasked
WAVEFRONT = Schedule("wavefront", _wavefront,
                     supports=frozenset({"dropout", "variational", "residual", "layer_norm",
                                         "compute_dtype"}))
