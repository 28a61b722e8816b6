"""Weight import from and export to Keras' `SimpleRNN`, `LSTM` and `GRU` layers.

Keras stores, per layer, `layer.get_weights() == [kernel, recurrent_kernel, bias]` with
kernel [in, G*U] and recurrent_kernel [U, G*U] in our x @ W orientation:
- LSTM: gate blocks [i | f | c | o] (ours), bias [4U]: copied as they are.
- GRU with `reset_after=True` (Keras' default, the cuDNN form): gate blocks [z | r | h],
  reordered to our [r | z | n]; bias [2, 3U], row 0 on the input path and row 1 on the
  recurrent path. Keras' h_t = z * h_{t-1} + (1 - z) * hh is our update with the same z,
  and hh = tanh(x_h + r * (h @ U_h + b_rec_h)) our n, so row 1's h block becomes `b_hn`.
  `reset_after=False` (bias [3U]) resets h before the matmul, a different function: refused.
- SimpleRNN: kernel [in, U], recurrent_kernel [U, U], bias [U].
A `Bidirectional(layer)` wrapper's `get_weights()` lists the forward layer's arrays,
then the backward layer's: six (LSTM, GRU, SimpleRNN alike), for our "fwd" and "bwd".
The layers must use Keras' default activations (tanh and sigmoid; relu is fine for a
SimpleRNN whose model was built with nonlinearity="relu") and `use_bias=True`.
"""

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from deeprnn_jax._src.interop.common import (check_convertible, direction, directions,
                                             layer_shapes, stack_layers, unstack_layers)
from deeprnn_jax._src.stack import StackedRNN

KERAS_LAYER = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


def _zr_swap(a, U):
  """Swaps the first two U-wide blocks of the last axis: Keras' [z|r|h] <-> our [r|z|n]."""
  return np.concatenate([a[..., U:2 * U], a[..., :U], a[..., 2 * U:]], axis=-1)


def _check_keras_arrays(arrays, l, cell, in_width, n_dirs):
  """Layer l's get_weights() list, shape-checked: float64 (kernel, rec, bias) per direction."""
  name = f"weights[{l}]"
  layer = KERAS_LAYER[cell.kind] if n_dirs == 1 else f"Bidirectional({KERAS_LAYER[cell.kind]})"
  if isinstance(arrays, (str, bytes)) or not isinstance(arrays, Sequence):
    raise TypeError(f"{name}: expected the list from a Keras {layer} layer's get_weights(), "
                    f"got {type(arrays).__name__}")
  if len(arrays) != 3 * n_dirs:
    per_direction = " per direction" if n_dirs > 1 else ""
    raise ValueError(f"{name}: expected {3 * n_dirs} arrays from a Keras {layer} layer's "
                     f"get_weights() (kernel, recurrent_kernel, bias{per_direction}; "
                     f"use_bias=True), got {len(arrays)}")
  U = cell.hidden_size
  GU = cell.gates * U
  bias_shape = (2, GU) if cell.kind == "gru" else (GU,)
  out = []
  for d in range(n_dirs):
    kernel, rec, bias = (np.asarray(a, np.float64) for a in arrays[3 * d:3 * d + 3])
    if cell.kind == "gru" and bias.shape == (GU,):
      raise ValueError(f"{name}: a GRU bias of shape ({GU},) comes from reset_after=False, "
                       f"which resets h before the matmul; only reset_after=True (Keras' "
                       f"default, bias shape (2, {GU})) is supported")
    for what, got, want in (("kernel", kernel, (in_width, GU)),
                            ("recurrent_kernel", rec, (U, GU)), ("bias", bias, bias_shape)):
      if got.shape != want:
        raise ValueError(f"{name}: expected {what} of shape {want} for layer {l} "
                         f"({layer}, in={in_width}, units={U}), got {got.shape}")
    out.append((kernel, rec, bias))
  return out


def _to_ours(kind, U, kernel, rec, bias):
  if kind != "gru":
    return {"w_ih": kernel, "w_hh": rec, "b": bias}
  b_in, b_rec = _zr_swap(bias[0], U), _zr_swap(bias[1], U)
  b = np.concatenate([b_in[:2 * U] + b_rec[:2 * U], b_in[2 * U:]])
  return {"w_ih": _zr_swap(kernel, U), "w_hh": _zr_swap(rec, U), "b": b,
          "b_hn": b_rec[2 * U:]}


def from_keras(model: StackedRNN, weights, dtype=jnp.float32):
  """Parameters for `model` from Keras layers' `get_weights()` lists.

  Args:
    model: a `stacked_rnn` of the cell ("rnn" for SimpleRNN), depth, widths and
      directions of the Keras stack (`Bidirectional` layers: `bidirectional=True`).
    weights: one entry per layer, bottom first, each `keras_layer.get_weights()`:
      [kernel, recurrent_kernel, bias] (six arrays, forward then backward, for a
      `Bidirectional` layer).
    dtype: dtype of the returned arrays.

  Returns:
    params for `model.apply`, giving the Keras stack's outputs (with
    `return_sequences=True` between layers) on the same inputs.

  Example:
    >>> weights = [layer.get_weights() for layer in keras_model.layers]
    >>> params = from_keras(stacked_rnn("lstm", 8, (16, 16)), weights)
  """
  check_convertible(model, "Keras")
  L = len(model.cells)
  if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
    raise TypeError(f"weights: expected a list with one get_weights() list per layer "
                    f"({L} layers), got {type(weights).__name__}")
  if len(weights) != L:
    raise ValueError(f"weights: expected {L} entries (one get_weights() list per layer), "
                     f"got {len(weights)}")
  dirs = directions(model)
  per_layer = []
  for l, (cell, shapes, arrays) in enumerate(zip(model.cells, layer_shapes(model), weights)):
    in_width = direction(shapes, dirs[0][0])["w_ih"].shape[0]
    per_dir = _check_keras_arrays(arrays, l, cell, in_width, len(dirs))
    layer = {key: _to_ours(cell.kind, cell.hidden_size, *w)
             for (key, _), w in zip(dirs, per_dir)}
    per_layer.append(layer[None] if None in layer else layer)
  return stack_layers(model, per_layer, dtype)


def _to_keras(kind, U, p):
  if kind != "gru":
    return [p["w_ih"], p["w_hh"], p["b"]]
  b_rec = np.concatenate([np.zeros(2 * U), p["b_hn"]])  # the r, z biases all on row 0
  bias = np.stack([_zr_swap(p["b"], U), _zr_swap(b_rec, U)])  # [2, 3U]
  return [_zr_swap(p["w_ih"], U), _zr_swap(p["w_hh"], U), bias]


def to_keras(model: StackedRNN, params, dtype=np.float32) -> list:
  """Keras `set_weights()` lists holding `params`, the inverse of `from_keras`.

  Args:
    model: the `stacked_rnn` that `params` belong to.
    params: its parameters.
    dtype: NumPy dtype of the arrays.

  Returns:
    one list per layer, [kernel, recurrent_kernel, bias] (forward then backward for a
    bidirectional stack), for `keras_layer.set_weights(...)` on SimpleRNN / LSTM /
    GRU(reset_after=True) layers (or `Bidirectional` ones) of the same sizes.
  """
  check_convertible(model, "Keras")
  out = []
  for cell, layer in zip(model.cells, unstack_layers(model, params)):
    arrays = []
    for key, _ in directions(model):
      arrays += _to_keras(cell.kind, cell.hidden_size, direction(layer, key))
    out.append([np.ascontiguousarray(a, dtype) for a in arrays])
  return out
