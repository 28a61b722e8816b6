"""cuDNN's fused LSTM as a time loop: `stacked_rnn("lstm", ..., time_loop="cudnn")`.

`jax.experimental.rnn.lstm` calls cuDNN's LSTM (GPUs only) with its own backward pass.
Each layer calls it once with its own weights (one layer, one direction per call), so
the stack around it stays the library's: dropout between layers, residual connections,
bidirectional layers (one call per direction), `lengths`, the depth scan.

Weights: the library's LSTM layer holds w_ih [F, 4H], w_hh [H, 4H] and one bias b [4H],
gates in the order i, f, g, o (cells.py). cuDNN's layer has the same gate order, PyTorch's
orientation W_ih [4H, F], W_hh [4H, H], and two biases, packed flat as W_ih, W_hh, b_ih,
b_hh (`jax.experimental.rnn`'s docstring). So W_ih = w_ih^T, W_hh = w_hh^T, b_ih = b,
b_hh = 0 (`pack_weights`); the gradients flow back through that packing by autodiff.

What it runs: cells that declare the standard LSTM equations (`Cell.standard == "lstm"`:
`stacked_rnn("lstm", ...)` without `layer_norm` or `proj_size`), the features in
`SUPPORTS` (no `recurrent_dropout`, `remat`, a `compute_dtype` but float32, or another
wrapper), float32 params and inputs, no `resets`; anything else is a ValueError naming
the option (`core/options.py`). cuDNN
uses TF32 matmuls unless JAX's default matmul precision is "highest", as JAX's own GPU
matmuls do.

Lengths: cuDNN reads row b's first lengths[b] steps; outputs past them are zero and the
final carry is the carry at the last valid step, as in the scan. A row of length 0 runs
one step in cuDNN (which needs >= 1) and gets its initial carry back. A backward
direction (`reverse`) reverses each row's valid steps, runs forward and reverses the
outputs back.
"""

import jax
import jax.numpy as jnp
from jax.experimental import rnn

from deeprnn_jax._src.core import masking
from deeprnn_jax._src.core.types import LSTMState, TimeLoop
from deeprnn_jax._src.loops import fused_checks

NAME = "time_loop='cudnn'"


def pack_weights(params):
  """One LSTM layer's params -> cuDNN's flat weights [4H * (F + H) + 8H]."""
  b = params["b"]
  return jnp.concatenate([params["w_ih"].T.ravel(), params["w_hh"].T.ravel(), b,
                          jnp.zeros_like(b)])


def reference_kernel(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, num_layers,
                     dropout, bidirectional):
  """`jax.experimental.rnn.lstm_ref` on cuDNN's flat weights: JAX's reference for the
  cuDNN call, with `rnn.lstm`'s arguments; it runs on any backend (the tests run the
  cuDNN time loop with it on the CPU)."""
  W_ih, W_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size,
                                                   num_layers, bidirectional)
  return rnn.lstm_ref(x, h_0, c_0, W_ih, W_hh, b_ih, b_hh, seq_lengths, input_size,
                      hidden_size, num_layers, dropout, bidirectional)


def _check_cell(cell, params=None):
  if cell.standard != "lstm" or (
      params is not None and set(params) != {"w_ih", "w_hh", "b"}):
    what = (" with a projection" if getattr(cell, "output_size", None)
            else " of another kind" if cell.kind == "lstm" else "")
    raise ValueError(f"cell: {NAME} expected the LSTM cell of stacked_rnn('lstm', ...), "
                     f"got a {cell.kind!r} cell{what}; use time_loop='scan'")


def _check_call(cell, params, carry, xs, resets, kernel):
  _check_cell(cell, params)
  fused_checks.check_no_resets(NAME, "cuDNN", resets)
  fused_checks.check_float32(NAME, params, carry, xs)
  if kernel is None and jax.default_backend() != "gpu":
    raise ValueError(f"time_loop: {NAME} expected a GPU backend with cuDNN "
                     f"(jax.experimental.rnn.lstm), got backend {jax.default_backend()!r}; "
                     f"use time_loop='scan'")


# what the library's layers around cuDNN's one-layer call can add
SUPPORTS = frozenset({"bidirectional", "dropout", "variational", "residual"})


def _check_options(options, cells):
  fused_checks.check_layer_schedule(NAME, options)
  for cell in cells:
    _check_cell(cell)


def cudnn_time_loop(kernel=None) -> TimeLoop:
  """The cuDNN time loop; `kernel` (default `jax.experimental.rnn.lstm`) takes
  `rnn.lstm`'s arguments, e.g. `reference_kernel` to run the same path off a GPU."""
  call = rnn.lstm if kernel is None else kernel

  def make(options):
    def loop(cell, params, xs, carry, lengths=None, *, reverse=False, resets=None):
      _check_call(cell, params, carry, xs, resets, kernel)
      T, B, F = xs.shape  # time-major, as every time loop
      full = jnp.full((B,), T, jnp.int32) if lengths is None else lengths.astype(jnp.int32)
      x = masking.reverse_valid(xs, full) if reverse else xs
      y, h_n, c_n = call(jnp.swapaxes(x, 0, 1), carry.h[None], carry.c[None],  # [B, T, F]
                         pack_weights(params), jnp.maximum(full, 1), F, cell.hidden_size,
                         1, 0.0, False)
      ys = jnp.swapaxes(y, 0, 1)  # [T, B, H]
      ys = masking.reverse_valid(ys, full) if reverse else ys
      ys = jnp.where((jnp.arange(T)[:, None] < full[None, :])[..., None], ys, 0)
      empty = (full == 0)[:, None]  # [B, 1]
      final = LSTMState(jnp.where(empty, carry.h, h_n[0]), jnp.where(empty, carry.c, c_n[0]))
      return final, ys

    return loop

  return TimeLoop("cudnn", make, SUPPORTS, _check_options)


CUDNN = cudnn_time_loop()
