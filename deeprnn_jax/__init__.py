"""deeprnn_jax: deep (stacked) recurrent networks in JAX, as pure functions."""

from deeprnn_jax import diagnostics
from deeprnn_jax._src.base import Cell
from deeprnn_jax._src.base import LSTMState
from deeprnn_jax._src.cells import gru
from deeprnn_jax._src.checked import checked
from deeprnn_jax._src.cudnn import cudnn_time_loop
from deeprnn_jax._src.dropout import elementwise as dropout
from deeprnn_jax._src.dropout import keep_mask
from deeprnn_jax._src.cells import lstm
from deeprnn_jax._src.cells import rnn
from deeprnn_jax._src.interop import from_torch
from deeprnn_jax._src.interop import to_torch
from deeprnn_jax._src.keras_interop import from_keras
from deeprnn_jax._src.keras_interop import to_keras
from deeprnn_jax._src.pipeline import idle_fraction as pipeline_idle_fraction
from deeprnn_jax._src.pipeline import pipeline
from deeprnn_jax._src.stack import StackedRNN
from deeprnn_jax._src.stack import count_params
from deeprnn_jax._src.stack import layer_params
from deeprnn_jax._src.stack import stacked_rnn
from deeprnn_jax._src.tbptt import tbptt_apply
from deeprnn_jax._src.tbptt import tbptt_train
from deeprnn_jax._src.time_loops import TimeLoop
from deeprnn_jax._src.train import make_eval_step
from deeprnn_jax._src.train import make_train_step
from deeprnn_jax._src.train import optimizer
from deeprnn_jax._src.train import sigmoid_binary_loss
from deeprnn_jax._src.unroll import loop_layer
from deeprnn_jax._src.unroll import scan_layer

__version__ = "0.1.0"

__all__ = (
    "Cell",
    "LSTMState",
    "StackedRNN",
    "TimeLoop",
    "checked",
    "count_params",
    "cudnn_time_loop",
    "dropout",
    "from_keras",
    "from_torch",
    "gru",
    "keep_mask",
    "layer_params",
    "loop_layer",
    "lstm",
    "make_eval_step",
    "make_train_step",
    "optimizer",
    "pipeline",
    "pipeline_idle_fraction",
    "rnn",
    "scan_layer",
    "sigmoid_binary_loss",
    "stacked_rnn",
    "tbptt_apply",
    "tbptt_train",
    "to_keras",
    "to_torch",
)


def __getattr__(name):
  # imported on first use, so that `import deeprnn_jax` needs no Flax; they are left out of
  # __all__ so that `from deeprnn_jax import *` needs none either
  if name == "FlaxStackedRNN":
    from deeprnn_jax._src.flax_adapter import FlaxStackedRNN
    return FlaxStackedRNN
  if name == "NNXStackedRNN":
    from deeprnn_jax._src.nnx_adapter import NNXStackedRNN
    return NNXStackedRNN
  raise AttributeError(f"module 'deeprnn_jax' has no attribute {name!r}")
