"""What the PyTorch and Keras converters share: directions, checks, per-layer params."""

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.core import layout
from deeprnn_jax._src.stack import StackedRNN


def directions(model):
  """(our direction key, PyTorch name suffix) per direction; key None if unidirectional."""
  if getattr(model, "bidirectional", False):
    return (("fwd", ""), ("bwd", "_reverse"))
  return ((None, ""),)


def direction(layer, key):
  return layer if key is None else layer[key]


def check_convertible(model, framework):
  if not isinstance(model, StackedRNN):
    raise TypeError(f"model: expected a StackedRNN from stacked_rnn, got "
                    f"{type(model).__name__}")
  if any(getattr(c, "layer_norm", False) for c in model.cells):
    raise ValueError(f"model: {framework}'s recurrent layers have no layer normalisation; "
                     f"expected a stack built with layer_norm=False, got layer_norm=True")
  kind = model.cells[0].kind
  if kind not in ("rnn", "lstm", "gru"):
    raise ValueError(f"model: {framework} has no cell like this user-defined one; expected "
                     f"cell 'rnn', 'lstm' or 'gru', got kind {kind!r}")
  if framework == "Keras" and any(c.output_size for c in model.cells):
    raise ValueError("model: Keras' LSTM has no output projection; expected a stack built "
                     f"with proj_size=None, got proj_size={model.cells[0].output_size}")


def layer_shapes(model):
  """Per layer, its params as `model.init` makes them, as ShapeDtypeStructs (no compute)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  return [jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), shapes[g])
          for g, (_, count) in enumerate(model.groups) for _ in range(count)]


def stack_layers(model, per_layer, dtype):
  """Per-layer dicts of NumPy arrays -> the grouped params tuple of `model`."""
  per_layer = [jax.tree.map(lambda a: jnp.asarray(a, dtype), p) for p in per_layer]
  return layout.stack(per_layer, model.groups)


def unstack_layers(model, params):
  """`params` checked against `model.init`'s structure, as per-layer float64 NumPy dicts."""
  checks.check_params(params, jax.eval_shape(model.init, jax.random.key(0)))
  return [jax.tree.map(lambda a: np.asarray(a, np.float64), p)
          for p in layout.unstack(model.groups, params)]
