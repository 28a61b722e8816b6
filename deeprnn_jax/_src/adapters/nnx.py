"""A Flax NNX Module around a stack, so that it drops into NNX models.

NNX is the Flax API that new Flax code is written in; `FlaxStackedRNN` covers linen. This
Module holds the stack's params as `nnx.Param`s laid out exactly as `model.init(key)`
makes them (a tuple with one dict per group of equal layers), so `nnx.Optimizer`,
`nnx.state` and `nnx.jit` see them like any NNX layer's, and `get_params`/`set_params`
move them to and from `model.apply` unchanged. Dropout follows `nnx.Dropout`: masks from
the "dropout" stream of the `nnx.Rngs` given at construction, on while `deterministic`
is False (`module.train()`), off after `module.eval()`.
Imported on first use of `deeprnn_jax.NNXStackedRNN`: the library itself needs no Flax.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.stack import stacked_rnn


def _is_param(x):
  return isinstance(x, nnx.Variable)


def _stream(rngs, name, why):
  """The `name` stream of `rngs` (else its "default" one, as NNX layers fall back to)."""
  try:
    return rngs[name]
  except KeyError:
    raise ValueError(f"rngs: {why} needs a {name!r} (or 'default') stream, e.g. "
                     f"nnx.Rngs(params=0, dropout=1); got streams {sorted(rngs)}") from None


class NNXStackedRNN(nnx.Module):
  """`stacked_rnn(...).apply` as an NNX Module, its params `nnx.Param`s.

  Attributes:
    model: the `StackedRNN` that `stacked_rnn(cell, input_size, hidden_sizes, **options)`
      built; `model.apply(module.get_params(), ...)` gives the Module's numbers.
    stack: the params, `model.init`'s pytree with an `nnx.Param` at every leaf.
    deterministic: True turns dropout off (`module.eval()`), False on (`module.train()`).
    rngs: the forked "dropout" stream the masks come from; None without dropout.

  Example:
    >>> rnn = NNXStackedRNN("lstm", 16, (32, 32), dropout=0.2,
    ...                     rngs=nnx.Rngs(params=0, dropout=1))
    >>> ys, state = rnn(xs, lengths)       # xs [batch, time, 16] -> ys [batch, time, 32]
    >>> rnn.eval()                         # no dropout from now on
    >>> last, _ = rnn(xs, lengths, output="last")   # [batch, 32]
  """

  def __init__(self, cell: str, input_size: int, hidden_sizes, *, rngs: nnx.Rngs,
               param_dtype: Any = jnp.float32, deterministic: bool = False,
               **stacked_rnn_options):
    """Builds the stack and draws its params from the "params" stream of `rngs`.

    Args:
      cell, input_size, hidden_sizes, **stacked_rnn_options: as for `stacked_rnn`
        (dropout, bidirectional, residual, layer_norm, compute_dtype, ...).
      rngs: an `nnx.Rngs`; its "params" stream draws the key of `model.init` and, when
        the stack has dropout, its "dropout" stream is forked for the masks (either
        falls back to "default", so `nnx.Rngs(0)` does).
      param_dtype: floating dtype of the params (float16 and bfloat16 ones are drawn in
        float32, then cast).
      deterministic: start with dropout off (True) or on (False, as `nnx.Dropout`).
    """
    if not isinstance(rngs, nnx.Rngs):
      raise TypeError(f"rngs: expected an nnx.Rngs, e.g. nnx.Rngs(params=0, dropout=1), "
                      f"got {type(rngs).__name__}")
    if not isinstance(deterministic, (bool, np.bool_)):
      raise TypeError(f"deterministic: expected a bool, got {deterministic!r}")
    try:
      param_dtype = jnp.dtype(param_dtype)
    except TypeError:
      raise TypeError(f"param_dtype: expected a floating dtype, got {param_dtype!r}") from None
    if not jnp.issubdtype(param_dtype, jnp.floating):
      raise TypeError(f"param_dtype: expected a floating dtype, got {param_dtype}")
    model = stacked_rnn(cell, input_size, hidden_sizes, **stacked_rnn_options)
    self.model = nnx.static(model)
    self.deterministic = bool(deterministic)
    key = _stream(rngs, "params", "drawing the params")()
    # drawn in float32 at least, then cast: the orthogonal init's QR has no bfloat16 or
    # float16 kernel on the CPU. Jitted: an eager init would compile op by op
    draw_dtype = param_dtype if param_dtype.itemsize >= 4 else jnp.dtype(jnp.float32)
    params = jax.jit(model.init, static_argnums=1)(key, draw_dtype)
    params = jax.tree.map(lambda a: a.astype(param_dtype), params)
    self.stack = nnx.data(jax.tree.map(nnx.Param, params))
    has_dropout = model.dropout > 0 or model.recurrent_dropout > 0
    self.rngs = nnx.data(_stream(rngs, "dropout", "a stack with dropout").fork()
                         if has_dropout else None)

  def get_params(self):
    """The params as plain arrays, the pytree of `model.init(key)`, for `model.apply`."""
    return jax.tree.map(lambda v: v.get_value(), self.stack, is_leaf=_is_param)

  def set_params(self, params):
    """Loads `params` (the pytree of `model.init(key)`, e.g. trained with `model.apply`
    or converted by `from_torch`) into the Module's `nnx.Param`s, in their dtype."""
    want = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), self.stack,
                        is_leaf=_is_param)
    checks.check_params(params, want)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
      if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
        raise TypeError(f"params{jax.tree_util.keystr(path)}: expected a floating dtype, "
                        f"got {jnp.result_type(leaf)}")
    jax.tree.map(lambda v, x: v.set_value(jnp.asarray(x, v.dtype)), self.stack, params,
                 is_leaf=_is_param)

  def set_view(self, deterministic: Optional[bool] = None):
    """For `nnx.view(module, deterministic=...)`, as `nnx.Dropout` has it."""
    if deterministic is not None:
      self.deterministic = deterministic

  def __call__(self, xs, lengths=None, initial_state=None, *, output: str = "sequence",
               deterministic: Optional[bool] = None, rngs=None):
    """Runs the stack: (ys, state) exactly as `model.apply` returns them.

    Args:
      xs: [batch, time, input_size].
      lengths: optional int [batch], valid steps per sequence.
      initial_state: optional state, as `model.initial_state(batch)` makes it.
      output: "sequence", "last" or "all", as in `model.apply`.
      deterministic: overrides the attribute for this call (True: no dropout).
      rngs: overrides the stream for this call: an `nnx.Rngs` (its "dropout" stream),
        an `nnx.RngStream` or a key; with a key `k` the masks are those of
        `model.apply(..., train=True, key=k)`.

    Returns:
      (ys, state) of `model.apply(self.get_params(), xs, lengths, initial_state,
      train=not deterministic, key=<next key of the stream>, output=output)`.
    """
    if deterministic is None:
      deterministic = self.deterministic
    if not isinstance(deterministic, (bool, np.bool_)):
      raise TypeError(f"deterministic: expected a bool, got {deterministic!r}")
    train = not deterministic
    needs_key = train and (self.model.dropout > 0 or self.model.recurrent_dropout > 0)
    key = self._dropout_key(rngs) if needs_key else None
    return self.model.apply(self.get_params(), xs, lengths, initial_state, train=train,
                            key=key, output=output)

  def _dropout_key(self, rngs):
    if rngs is None:
      return self.rngs()
    if isinstance(rngs, nnx.Rngs):
      return _stream(rngs, "dropout", "dropout in training")()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      try:
        checks.check_key(rngs)
      except TypeError as e:  # the check names the argument "key": here it is "rngs"
        raise TypeError(f"rngs: {str(e).split(': ', 1)[1]}") from None
      return rngs
    raise TypeError(f"rngs: expected an nnx.Rngs, an nnx.RngStream or a PRNG key, got "
                    f"{type(rngs).__name__}")
