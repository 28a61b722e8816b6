"""deeprnn_jax: deep (stacked) recurrent networks in JAX, as pure functions."""

import importlib.util

from deeprnn_jax import cells
from deeprnn_jax import diagnostics
from deeprnn_jax import layers
from deeprnn_jax import loops
from deeprnn_jax import schedules
from deeprnn_jax._src.cells import gru
from deeprnn_jax._src.cells import lstm
from deeprnn_jax._src.cells import rnn
from deeprnn_jax._src.core.checked import checked
from deeprnn_jax._src.core.types import Cell
from deeprnn_jax._src.core.types import LSTMState
from deeprnn_jax._src.core.types import TimeLoop
from deeprnn_jax._src.interop.keras import from_keras
from deeprnn_jax._src.interop.keras import to_keras
from deeprnn_jax._src.interop.torch import from_torch
from deeprnn_jax._src.interop.torch import to_torch
from deeprnn_jax._src.layers.dropout import elementwise as dropout
from deeprnn_jax._src.layers.dropout import keep_mask
from deeprnn_jax._src.layers.zoneout import zoneout
from deeprnn_jax._src.loops.auto import choices as time_loop_choices
from deeprnn_jax._src.loops.cudnn import cudnn_time_loop
from deeprnn_jax._src.loops.scan import loop_layer
from deeprnn_jax._src.loops.scan import scan_layer
from deeprnn_jax._src.schedules.pipeline import idle_fraction as pipeline_idle_fraction
from deeprnn_jax._src.schedules.pipeline import pipeline
from deeprnn_jax._src.stack import StackedRNN
from deeprnn_jax._src.stack import compose
from deeprnn_jax._src.stack import count_params
from deeprnn_jax._src.stack import layer_params
from deeprnn_jax._src.stack import stacked_rnn
from deeprnn_jax._src.training.steps import make_eval_step
from deeprnn_jax._src.training.steps import make_train_step
from deeprnn_jax._src.training.steps import optimizer
from deeprnn_jax._src.training.steps import sigmoid_binary_loss
from deeprnn_jax._src.training.tbptt import tbptt_apply
from deeprnn_jax._src.training.tbptt import tbptt_train

__version__ = "0.1.0"

__all__ = (
    "Cell",
    "LSTMState",
    "StackedRNN",
    "TimeLoop",
    "cells",
    "checked",
    "compose",
    "count_params",
    "cudnn_time_loop",
    "time_loop_choices",
    "diagnostics",
    "dropout",
    "from_keras",
    "from_torch",
    "gru",
    "keep_mask",
    "layer_params",
    "layers",
    "loop_layer",
    "loops",
    "lstm",
    "make_eval_step",
    "make_train_step",
    "optimizer",
    "pipeline",
    "pipeline_idle_fraction",
    "rnn",
    "scan_layer",
    "schedules",
    "sigmoid_binary_loss",
    "stacked_rnn",
    "tbptt_apply",
    "tbptt_train",
    "to_keras",
    "to_torch",
    "zoneout",
)
# the Flax adapters are public too; they are listed only where Flax is installed, so that
# `from deeprnn_jax import *` works without it (they are imported on first use, below)
if importlib.util.find_spec("flax") is not None:
  __all__ += ("FlaxStackedRNN", "NNXStackedRNN")


def __getattr__(name):
  # imported on first use, so that `import deeprnn_jax` needs no Flax
  if name == "FlaxStackedRNN":
    from deeprnn_jax._src.adapters.linen import FlaxStackedRNN
    return FlaxStackedRNN
  if name == "NNXStackedRNN":
    from deeprnn_jax._src.adapters.nnx import NNXStackedRNN
    return NNXStackedRNN
  raise AttributeError(f"module 'deeprnn_jax' has no attribute {name!r}")
