"""Weight import from PyTorch's `nn.RNN`, `nn.LSTM` and `nn.GRU`.

PyTorch keeps, per layer k, `weight_ih_l{k}` [G*H, in], `weight_hh_l{k}` [G*H, H],
`bias_ih_l{k}` and `bias_hh_l{k}` [G*H], applied as x @ W.T + b, with gate rows
[i | f | g | o] (LSTM) and [r | z | n] (GRU): the same orders as ours, so the kernels
only transpose. The two biases add up, except the GRU's recurrent n bias, which r
multiplies and which therefore becomes our `b_hn`.
"""

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax._src.stack import StackedRNN


def _torch_names(num_layers):
  names = []
  for k in range(num_layers):
    names += [f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}"]
  return names


def from_torch(model: StackedRNN, state_dict: Mapping[str, np.ndarray], dtype=jnp.float32):
  """Parameters for `model` from a PyTorch `nn.RNN/LSTM/GRU` `state_dict()`.

  Args:
    model: a `stacked_rnn` of the same cell, depth and widths as the torch module
      (and, for "rnn", the same nonlinearity; `batch_first` does not matter).
    state_dict: {name: array} as `{k: v.numpy() for k, v in module.state_dict().items()}`;
      the module must have `bias=True` and no `proj_size`.
    dtype: dtype of the returned arrays.

  Returns:
    params for `model.apply`, giving the torch module's outputs on the same inputs.
  """
  if not isinstance(state_dict, Mapping):
    raise TypeError(f"state_dict: expected a mapping of names to arrays, "
                    f"got {type(state_dict).__name__}")
  L = len(model.cells)
  expected = _torch_names(L)
  missing = [n for n in expected if n not in state_dict]
  extra = sorted(set(state_dict) - set(expected))
  if missing or extra:
    raise ValueError(f"state_dict: expected the {len(expected)} entries of a {L}-layer "
                     f"unidirectional torch {model.cells[0].kind.upper()} with bias; "
                     f"missing {missing}, unexpected {extra}")
  widths = (model.input_size,) + model.hidden_sizes
  per_layer = []
  for k, cell in enumerate(model.cells):
    G, H = cell.gates, cell.hidden_size
    shapes = {f"weight_ih_l{k}": (G * H, widths[k]), f"weight_hh_l{k}": (G * H, H),
              f"bias_ih_l{k}": (G * H,), f"bias_hh_l{k}": (G * H,)}
    w = {}
    for name, shape in shapes.items():
      value = np.asarray(state_dict[name])
      if value.shape != shape:
        raise ValueError(f"state_dict[{name!r}]: expected shape {shape} for layer {k} "
                         f"({cell.kind}, in={widths[k]}, hidden={H}), got {value.shape}")
      w[name[:-len(f"_l{k}")]] = value.astype(np.float64)
    b = w["bias_ih"] + w["bias_hh"]
    layer = {"w_ih": w["weight_ih"].T, "w_hh": w["weight_hh"].T, "b": b}
    if cell.kind == "gru":
      layer["b"] = np.concatenate([b[:2 * H], w["bias_ih"][2 * H:]])
      layer["b_hn"] = w["bias_hh"][2 * H:]
    per_layer.append({n: jnp.asarray(v, dtype) for n, v in layer.items()})
  return tuple(jax.tree.map(lambda *a: jnp.stack(a), *per_layer[first:first + count])
               for first, count in model.groups)
