"""Layers: the base layer (a cell run over time) and the wrappers that take a layer and
return a layer, one file each. `WRAPPERS` are the public wrapper factories, each
returning a `Wrapper` for `stacked_rnn(..., wrappers=...)` or `compose(..., wrappers=...)`.
"""

from deeprnn_jax._src.layers import bidirectional as _bidirectional
from deeprnn_jax._src.layers import dropout as _dropout
from deeprnn_jax._src.layers import residual as _residual
from deeprnn_jax._src.core import checks
from deeprnn_jax._src.layers.base import Layer, Wrapper
from deeprnn_jax._src.layers.zoneout import zoneout


def input_dropout(rate: float, variational: bool = False) -> Wrapper:
  """Dropout of `rate` on a layer's input in training (never on layer 0's, the stack's
  inputs): a fresh mask per element and step, or with `variational` one per sequence
  [batch, features] (Gal & Ghahramani 2016)."""
  rate = checks.check_dropout(rate)
  variational = checks.check_flag(variational, "variational")
  features = (("dropout", rate),) + ((("variational", True),) if variational else ())
  return Wrapper(features, lambda layer: _dropout.input_dropout(layer, rate, variational))


def recurrent_dropout(rate: float) -> Wrapper:
  """Variational dropout of `rate` on the h that feeds the recurrence, (h * m) @ w_hh,
  one mask [batch, hidden] per sequence and direction (Keras' `recurrent_dropout`)."""
  rate = checks.check_rate(rate, "recurrent_dropout")
  return Wrapper((("recurrent_dropout", rate),),
                 lambda layer: _dropout.recurrent_dropout(layer, rate))


def bidirectional() -> Wrapper:
  """A forward and a backward run of the layer; output [forward | backward]."""
  return Wrapper((("bidirectional", True),), _bidirectional.bidirectional)


def residual() -> Wrapper:
  """From layer 1 on, a layer as wide as its input adds that input (Wu et al. 2016)."""
  return Wrapper((("residual", True),), _residual.residual)

# the public wrapper factories (deeprnn_jax.layers): a new wrapper is a file and a line here
WRAPPERS = {
    "input_dropout": input_dropout,
    "recurrent_dropout": recurrent_dropout,
    "bidirectional": bidirectional,
    "residual": residual,
    "zoneout": zoneout,
}
