"""Weight import from and export to PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU`.

PyTorch keeps, per layer k, `weight_ih_l{k}` [G*H, in], `weight_hh_l{k}` [G*H, H],
`bias_ih_l{k}` and `bias_hh_l{k}` [G*H], applied as x @ W.T + b, with gate rows
[i | f | g | o] (LSTM) and [r | z | n] (GRU): the same orders as ours, so the kernels
only transpose. The two biases add up, except the GRU's recurrent n bias, which r
multiplies and which therefore becomes our `b_hn`. A bidirectional module has the same
entries again with the suffix `_reverse` for the backward direction, our "bwd" params;
its layer k > 0 reads [forward | backward] outputs, 2H wide, as ours does.
"""

from typing import Mapping

import jax.numpy as jnp
import numpy as np

from deeprnn_jax._src.interop.common import (check_convertible, direction, directions,
                                             layer_shapes, stack_layers, unstack_layers)
from deeprnn_jax._src.stack import StackedRNN

TORCH_FIELDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _fields(cell):
  """PyTorch's fields of one layer and direction: weight_hr too with a projection."""
  return TORCH_FIELDS + (("weight_hr",) if cell.output_size else ())


def _torch_names(model):
  """All state_dict names of the torch module matching `model`, in PyTorch's order."""
  return [f"{field}_l{k}{suffix}" for k, cell in enumerate(model.cells)
          for _, suffix in directions(model) for field in _fields(cell)]


def _read_torch(state_dict, k, suffix, cell, in_width):
  """Layer k's entries for one direction, shape-checked, as float64 {field: array}."""
  GH, H = cell.gates * cell.hidden_size, cell.hidden_size
  P = cell.output_size or H  # the width of h (an LSTM's proj_size)
  want = {"weight_ih": (GH, in_width), "weight_hh": (GH, P), "bias_ih": (GH,),
          "bias_hh": (GH,)}
  if cell.output_size:
    want["weight_hr"] = (P, H)
  w = {}
  for field, shape in want.items():
    name = f"{field}_l{k}{suffix}"
    value = np.asarray(state_dict[name])
    if value.shape != shape:
      raise ValueError(f"state_dict[{name!r}]: expected shape {shape} for layer {k} "
                       f"({cell.kind}, in={in_width}, hidden={H}), got {value.shape}")
    w[field] = value.astype(np.float64)
  return w


def _to_ours(kind, H, w):
  """One layer and direction: torch {field: array} -> our {w_ih, w_hh, b(, b_hn)}."""
  b = w["bias_ih"] + w["bias_hh"]
  layer = {"w_ih": w["weight_ih"].T, "w_hh": w["weight_hh"].T, "b": b}
  if "weight_hr" in w:  # h = (o * tanh(c)) @ weight_hr.T
    layer["w_hr"] = w["weight_hr"].T
  if kind == "gru":  # r multiplies the recurrent n bias, so it cannot join b
    layer["b"] = np.concatenate([b[:2 * H], w["bias_ih"][2 * H:]])
    layer["b_hn"] = w["bias_hh"][2 * H:]
  return layer


def from_torch(model: StackedRNN, state_dict: Mapping[str, np.ndarray], dtype=jnp.float32):
  """Parameters for `model` from a PyTorch `nn.RNN/LSTM/GRU` `state_dict()`.

  Args:
    model: a `stacked_rnn` of the same cell, depth, widths and directions as the torch
      module (and, for "rnn", the same nonlinearity; `batch_first` does not matter).
    state_dict: {name: array} as `{k: v.numpy() for k, v in module.state_dict().items()}`;
      the module must have `bias=True`. A `bidirectional=True` module needs
      `stacked_rnn(..., bidirectional=True)`, a `proj_size=P` LSTM `proj_size=P`.
    dtype: dtype of the returned arrays.

  Returns:
    params for `model.apply`, giving the torch module's outputs on the same inputs.
  """
  if not isinstance(state_dict, Mapping):
    raise TypeError(f"state_dict: expected a mapping of names to arrays, "
                    f"got {type(state_dict).__name__}")
  check_convertible(model, "PyTorch")
  expected = _torch_names(model)
  missing = [n for n in expected if n not in state_dict]
  extra = sorted(set(state_dict) - set(expected))
  if missing or extra:
    kind = "bidirectional" if len(directions(model)) == 2 else "unidirectional"
    hint = ("; proj_size is not supported by this model: build it with "
            "stacked_rnn(..., proj_size=P)"
            if any(n.startswith("weight_hr") for n in extra) else "")
    raise ValueError(f"state_dict: expected the {len(expected)} entries of a "
                     f"{len(model.cells)}-layer {kind} torch {model.cells[0].kind.upper()} "
                     f"with bias; missing {missing}, unexpected {extra}{hint}")
  per_layer = []
  for k, (cell, shapes) in enumerate(zip(model.cells, layer_shapes(model))):
    layer = {}
    for key, suffix in directions(model):
      in_width = direction(shapes, key)["w_ih"].shape[0]
      w = _read_torch(state_dict, k, suffix, cell, in_width)
      layer[key] = _to_ours(cell.kind, cell.hidden_size, w)
    per_layer.append(layer[None] if None in layer else layer)
  return stack_layers(model, per_layer, dtype)


def to_torch(model: StackedRNN, params, dtype=np.float32) -> dict:
  """A PyTorch `state_dict` of NumPy arrays holding `params`, the inverse of `from_torch`.

  Load it with `module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`
  into `nn.RNN/LSTM/GRU(input_size, H, num_layers=L, bidirectional=model.bidirectional)`
  (with `nonlinearity` for "rnn"); that module then gives `model.apply`'s outputs. Our one
  bias goes to `bias_ih`; `bias_hh` is zero, except the GRU's n block, which holds `b_hn`.

  Args:
    model: the `stacked_rnn` that `params` belong to (all layers of equal width, as
      torch's stacks are).
    params: its parameters.
    dtype: NumPy dtype of the arrays (float32: what torch.from_numpy reads directly).

  Returns:
    {name: array} with PyTorch's names, shapes and order.
  """
  check_convertible(model, "PyTorch")
  state_dict = {}
  for k, (cell, layer) in enumerate(zip(model.cells, unstack_layers(model, params))):
    H = cell.hidden_size
    for key, suffix in directions(model):
      p = direction(layer, key)
      bias_hh = np.zeros_like(p["b"])
      if cell.kind == "gru":
        bias_hh[2 * H:] = p["b_hn"]
      fields = {"weight_ih": p["w_ih"].T, "weight_hh": p["w_hh"].T, "bias_ih": p["b"],
                "bias_hh": bias_hh}
      if cell.output_size:
        fields["weight_hr"] = p["w_hr"].T
      for field in _fields(cell):
        state_dict[f"{field}_l{k}{suffix}"] = np.ascontiguousarray(fields[field], dtype)
  return state_dict
