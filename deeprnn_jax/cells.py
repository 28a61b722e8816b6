"""Cells: pure-function RNN, LSTM and GRU cells, and `make_cell` by name."""

from deeprnn_jax._src.cells import CELLS
from deeprnn_jax._src.cells import gru
from deeprnn_jax._src.cells import lstm
from deeprnn_jax._src.cells import make_cell
from deeprnn_jax._src.cells import rnn
from deeprnn_jax._src.core.types import Cell
from deeprnn_jax._src.core.types import FastRule
from deeprnn_jax._src.core.types import LSTMState

__all__ = ("CELLS", "Cell", "FastRule", "LSTMState", "gru", "lstm", "make_cell", "rnn")
