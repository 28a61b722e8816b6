"""Layers and their wrappers: `Wrapper`s for `stacked_rnn(wrappers=)` and `compose`."""

from deeprnn_jax._src.layers import WRAPPERS
from deeprnn_jax._src.layers import bidirectional
from deeprnn_jax._src.layers import input_dropout
from deeprnn_jax._src.layers import recurrent_dropout
from deeprnn_jax._src.layers import residual
from deeprnn_jax._src.layers import zoneout
from deeprnn_jax._src.layers.base import Context
from deeprnn_jax._src.layers.base import Layer
from deeprnn_jax._src.layers.base import Wrapper
from deeprnn_jax._src.layers.base import recurrent
from deeprnn_jax._src.layers.base import with_cell_transform

__all__ = ("Context", "Layer", "WRAPPERS", "Wrapper", "bidirectional", "input_dropout",
           "recurrent", "recurrent_dropout", "residual", "with_cell_transform", "zoneout")
