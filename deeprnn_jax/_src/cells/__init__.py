"""Cells: the simple RNN (tanh/ReLU), LSTM and GRU, one file each, and their registry.

A cell is a `Cell` of pure functions (core/types.py) made by a lower-case factory. Each
cell file writes its equations once and declares its custom-JVP rule beside them; a new
cell is a new file here and one line in `CELLS`.
"""

from typing import Optional

import numpy as np

from deeprnn_jax._src.cells import common
from deeprnn_jax._src.cells import rnn_cell
from deeprnn_jax._src.cells.gru_cell import gru
from deeprnn_jax._src.cells.lstm_cell import lstm
from deeprnn_jax._src.cells.rnn_cell import rnn
from deeprnn_jax._src.core.types import Cell

CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}


def make_cell(kind: str, hidden_size: int, *, nonlinearity: Optional[str] = None,
              forget_bias: Optional[float] = None, layer_norm: bool = False,
              proj_size: Optional[int] = None, **init_kwargs) -> Cell:
  """Builds a cell by name, rejecting options that do not apply to it."""
  if kind not in CELLS:
    raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {kind!r}")
  kwargs = dict(init_kwargs)
  if proj_size is not None:
    if kind != "lstm":
      raise ValueError(f"proj_size: only the 'lstm' cell has an output projection, got "
                       f"cell {kind!r}")
    kwargs["proj_size"] = proj_size
  common.check_layer_norm(layer_norm)
  if layer_norm:
    if kind == "rnn":
      raise ValueError("layer_norm: only the 'lstm' and 'gru' cells have a layer-norm "
                       "form, got cell 'rnn'")
    kwargs["layer_norm"] = True
  if nonlinearity is not None:
    if kind != "rnn":
      if nonlinearity not in rnn_cell.NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {sorted(rnn_cell.NONLINEARITIES)}, "
                         f"got {nonlinearity!r}")
      if nonlinearity != "tanh":
        raise ValueError(f"nonlinearity: only the 'rnn' cell takes one; {kind!r} has "
                         f"fixed gate nonlinearities, got {nonlinearity!r}")
    else:
      kwargs["nonlinearity"] = nonlinearity
  if forget_bias is not None and kind == "lstm":
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, np.number)) \
        or not np.isfinite(forget_bias):
      raise ValueError(f"forget_bias: expected a number, got {forget_bias!r}")
    kwargs["forget_bias"] = forget_bias
  return CELLS[kind](hidden_size, **kwargs)
