"""oneDNN's fused CPU RNN as a time loop: `stacked_rnn(..., time_loop="onednn")`.

Each layer (one direction) is one call of oneDNN's LSTM or linear-before-reset GRU
primitive through the XLA FFI (`onednn_kernel/rnn.cc`), forward training with its
workspace and the backward from it, joined by `jax.custom_vjp`; the stack around it
stays the library's (dropout between layers, residual connections, bidirectional
layers, lengths, the depth scan), as with `time_loop="cudnn"`. It runs on the CPU only
and needs the compiled kernel and oneDNN (`onednn_kernel/library.py`); `"auto"`
(`loops/auto.py`) uses it where it is there and faster, the scan elsewhere.

Weights, with no copy for the LSTM: oneDNN's `ldigo` layout is the library's
[in, G * H] with gate blocks i, f, g, o. The GRU's blocks r, z, n become oneDNN's
u (= z), r, n, and its bias the four blocks b_z, b_r, b_n, b_hn (the last is oneDNN's
recurrent candidate bias: linear-before-reset is the library's reset-after GRU).
Gradients come back through the same permutation by autodiff.

Lengths: oneDNN runs every row over all T steps. Outputs up to each row's length are
exact (a step reads only earlier ones) and those past it are zeroed, so their
cotangents are zero and the gradients are exact too. The final h is y at step
length - 1. The LSTM's final c there is not returned by oneDNN: it is recomputed from
the outputs, c_t = f_t c_{t-1} + i_t g_t with the gates of one [T*B, F+H] matmul,
an elementwise scan (only when some row is shorter than T). A row of length 0 keeps its
initial carry. A reverse direction reverses each row within its length, runs forward
and reverses back (`core/masking.reverse_valid`).

Forward-mode differentiation (`jax.jvp`, `jax.jacfwd`) is not defined through
`custom_vjp`: use the scan for it.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src.core import masking
from deeprnn_jax._src.core import sharding
from deeprnn_jax._src.core.types import LSTMState, TimeLoop
from deeprnn_jax._src.loops import fused_checks
from deeprnn_jax._src.loops.onednn_kernel import library

NAME = "time_loop='onednn'"
KEYS = {"lstm": {"w_ih", "w_hh", "b"}, "gru": {"w_ih", "w_hh", "b", "b_hn"}}
# what the library's layers around oneDNN's one-layer call can add
SUPPORTS = frozenset({"bidirectional", "dropout", "variational", "residual"})


def _struct(shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _forward_call(cell, x, h0, c0, w_layer, w_iter, bias):
  T, B, F = x.shape
  H = h0.shape[-1]
  s = library.sizes(cell, T, B, F, H)
  outs = (_struct((T, B, H)), _struct((B, H)), _struct((B, H)),
          _struct((s.workspace,), jnp.uint8))
  call = jax.ffi.ffi_call(library.FORWARD, outs, vmap_method="sequential")
  return call(x, h0, c0, w_layer, w_iter, bias, cell=library.CELLS[cell])


def _backward_call(cell, saved, dy, dh_n, dc_n):
  x, h0, c0, w_layer, w_iter, bias = saved[:6]
  outs = (_struct(x.shape), _struct(h0.shape), _struct(c0.shape), _struct(w_layer.shape),
          _struct(w_iter.shape), _struct(bias.shape))
  call = jax.ffi.ffi_call(library.BACKWARD, outs, vmap_method="sequential")
  return call(*saved, dy, dh_n, dc_n, cell=library.CELLS[cell])


def _vma(x):
  """The manual mesh axes `x` varies over inside `jax.shard_map` (empty outside)."""
  t = jax.typeof(x)
  axis_type = getattr(t, "manual_axis_type", None)  # JAX >= 0.10
  if axis_type is not None:
    return frozenset(axis_type.varying)
  return frozenset(getattr(t, "vma", frozenset()))


def _varying(x, axes):
  """`x` typed as varying over the manual mesh `axes` (inside `jax.shard_map`), as the
  FFI call's results are not: a custom VJP must give each cotangent its input's type."""
  missing = tuple(sorted(axes - _vma(x)))
  return jax.lax.pcast(x, missing, to="varying") if missing else x


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(cell, x, h0, c0, w_layer, w_iter, bias):
  return _forward_call(cell, x, h0, c0, w_layer, w_iter, bias)[:3]


def _fused_fwd(cell, x, h0, c0, w_layer, w_iter, bias):
  y, h_n, c_n, workspace = _forward_call(cell, x, h0, c0, w_layer, w_iter, bias)
  axes = _vma(x)
  outs = tuple(_varying(o, axes) for o in (y, h_n, c_n))
  return outs, (x, h0, c0, w_layer, w_iter, bias, y, h_n, c_n, workspace)


def _fused_bwd(cell, saved, cotangents):
  grads = _backward_call(cell, saved, *cotangents)
  return tuple(_varying(g, _vma(p)) for g, p in zip(grads, saved[:6]))


_fused.defvjp(_fused_fwd, _fused_bwd)


def fused_layer(cell, x, h0, c0, w_layer, w_iter, bias):
  """One layer over all of x [T, B, F] in oneDNN's layouts: (y [T, B, H], h_n, c_n)
  (c_n zeros for the GRU). Inside `jax.shard_map` every input is first made varying
  over the axes any of them varies over, so that a replicated weight's gradient is the
  sum over the devices (the transpose of that cast)."""
  args = (x, h0, c0, w_layer, w_iter, bias)
  axes = frozenset().union(*(_vma(a) for a in args))
  return _fused(cell, *(_varying(a, axes) for a in args))


def pack(kind, params):
  """The library's params of one layer -> oneDNN's (w_layer, w_iter, bias)."""
  if kind == "lstm":
    return params["w_ih"], params["w_hh"], params["b"]
  H = params["b_hn"].shape[0]
  zrn = lambda w: jnp.concatenate([w[..., H:2 * H], w[..., :H], w[..., 2 * H:]], axis=-1)
  return zrn(params["w_ih"]), zrn(params["w_hh"]), jnp.concatenate(
      [zrn(params["b"]), params["b_hn"]])


def _lstm_c_at(params, xs, h0, c0, ys, last):
  """The LSTM's c at step `last` [B] of each row, from its inputs and outputs."""
  H = h0.shape[-1]
  h_prev = jnp.concatenate([h0[None], ys[:-1]], axis=0)  # [T, B, H]
  gates = xs @ params["w_ih"] + h_prev @ params["w_hh"] + params["b"]  # [T, B, 4H]
  i, f, g = (jax.nn.sigmoid(gates[..., :H]), jax.nn.sigmoid(gates[..., H:2 * H]),
             jnp.tanh(gates[..., 2 * H:3 * H]))
  _, cs = lax.scan(lambda c, a: (a[0] * c + a[1], a[0] * c + a[1]), c0, (f, i * g))
  return jnp.take_along_axis(cs, jnp.maximum(last, 0)[None, :, None], axis=0)[0]


def check_cell(cell, params=None):
  """A ValueError unless `cell` is the library's plain LSTM or GRU (its params, if
  given, exactly those of the standard equations)."""
  if cell.standard not in KEYS or (params is not None and set(params) != KEYS[cell.standard]):
    what = (" with a projection" if getattr(cell, "output_size", None)
            else " with extra parameters (layer norm)" if cell.standard in KEYS else "")
    raise ValueError(f"cell: {NAME} expected the LSTM or GRU cell of stacked_rnn('lstm' or "
                     f"'gru', ...), got a {cell.kind!r} cell{what}; use time_loop='scan'")


def check_call(cell, params, carry, xs, resets):
  """A ValueError naming what this call has that oneDNN's layer cannot run."""
  check_cell(cell, params)
  fused_checks.check_no_resets(NAME, "oneDNN", resets)
  fused_checks.check_float32(NAME, params, carry, xs)
  if jax.default_backend() != "cpu":
    raise ValueError(f"time_loop: {NAME} runs on the CPU; got backend "
                     f"{jax.default_backend()!r}; use time_loop='scan' (or 'cudnn')")
  lib = library.status()
  if lib.lib is None:
    raise ValueError(f"time_loop: {NAME} is unavailable: {lib.reason}; use "
                     f"time_loop='scan' or 'auto'")


def onednn_layer(cell, params, xs, carry, lengths=None, *, reverse=False, resets=None):
  """The time loop: one layer over xs [T, B, F] -> (final carry, ys [T, B, H])."""
  check_call(cell, params, carry, xs, resets)
  kind = cell.standard
  T, B, _ = xs.shape
  h0 = carry.h if kind == "lstm" else carry
  c0 = carry.c if kind == "lstm" else jnp.zeros_like(h0)
  full = None if lengths is None else lengths.astype(jnp.int32)
  x = masking.reverse_valid(xs, full) if reverse and full is not None else xs
  x = x[::-1] if reverse and full is None else x
  run, h_n, c_n = fused_layer(kind, x, h0, c0, *pack(kind, params))  # [T, B, H], x's order
  if full is None:
    ys = run[::-1] if reverse else run
    return (LSTMState(h_n, c_n) if kind == "lstm" else h_n), ys
  last = full - 1  # in x's order, row b's last valid output is at step full[b] - 1
  empty = (full == 0)[:, None]  # [B, 1]
  h = jnp.where(empty, h0, jnp.take_along_axis(run, jnp.maximum(last, 0)[None, :, None],
                                               axis=0)[0])
  ys = masking.reverse_valid(run, full) if reverse else run
  ys = jnp.where((jnp.arange(T)[:, None] < full[None, :])[..., None], ys, 0)
  if kind != "lstm":
    return h, ys
  # every row full length (TBPTT chunks, unpadded batches): oneDNN's own final c is it
  c = lax.cond(jnp.all(full == T), lambda: c_n,
               lambda: jnp.where(empty, c0, _lstm_c_at(params, x, h0, c0, run, last)))
  return LSTMState(h, c), ys


def _check_options(options, cells):
  fused_checks.check_layer_schedule(NAME, options)
  for cell in cells:
    check_cell(cell)


def _make(options):
  return sharding.per_device(onednn_layer)


ONEDNN = TimeLoop("onednn", _make, SUPPORTS, _check_options, depth_scan=False)
