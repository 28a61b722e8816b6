"""Stacked RNNs: layers grouped by shape, a depth scan per group, a loop reference.

Consecutive layers with the same (input width, hidden width) form a group whose
parameters are stacked on a leading axis; `lax.scan` runs over that axis, so a stack of
16 equal layers compiles one layer body, not 16. `params` is a tuple with one dict per
group, each leaf shaped [layers_in_group, ...].
"""

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src import checks
from deeprnn_jax._src.base import Cell
from deeprnn_jax._src.cells import make_cell
from deeprnn_jax._src.unroll import loop_layer, scan_layer


class StackedRNN(NamedTuple):
  """A stack of recurrent layers as pure functions, made by `stacked_rnn`.

  Attributes:
    init: `init(key) -> params`, a tuple of per-group dicts of arrays.
    apply: `apply(params, xs, lengths=None, initial_state=None, *, train=False, key=None)
      -> (ys, state)`; xs [batch, time, input_size], ys [batch, time, hidden_sizes[-1]],
      state a tuple with one carry per layer.
    apply_reference: same signature and numbers as `apply`, run by Python loops over
      layers and time steps (slow; for tests).
    initial_state: `initial_state(batch_size, dtype=float32)`: zeros, one carry per layer.
    step: `step(params, state, x_t) -> (state, y_t)`, one time step through every layer
      (x_t [batch, input_size]), for streaming inference.
    cells: the Cell of every layer.
    input_size, hidden_sizes, dropout: as given to `stacked_rnn`.
    groups: (first layer, number of layers) of every group of equally shaped layers.
  """

  init: Callable[..., Any]
  apply: Callable[..., Any]
  apply_reference: Callable[..., Any]
  initial_state: Callable[..., Any]
  step: Callable[..., Any]
  cells: Tuple[Cell, ...]
  input_size: int
  hidden_sizes: Tuple[int, ...]
  dropout: float
  groups: Tuple[Tuple[int, int], ...]


def _group_layers(widths):
  """Groups consecutive layers of equal (in, out) width: [(first, count), ...]."""
  groups = []
  for l in range(len(widths) - 1):
    shape = (widths[l], widths[l + 1])
    if groups and shape == (widths[groups[-1][0]], widths[groups[-1][0] + 1]):
      groups[-1][1] += 1
    else:
      groups.append([l, 1])
  return tuple((first, count) for first, count in groups)


def layer_params(model: StackedRNN, params, layer: int):
  """The parameter dict of one layer, taken out of its group's stacked arrays."""
  for g, (first, count) in enumerate(model.groups):
    if first <= layer < first + count:
      return jax.tree.map(lambda a: a[layer - first], params[g])
  raise IndexError(f"layer: expected 0 <= layer < {len(model.cells)}, got {layer}")


def _dropout(x, key, rate):
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def stacked_rnn(cell: str, input_size: int, hidden_sizes, *, nonlinearity: Optional[str] = None,
                forget_bias: float = 1.0, dropout: float = 0.0, unroll: int = 1,
                kernel_init=None, recurrent_init=None, bias_init=None) -> StackedRNN:
  """Builds a stack of `cell` layers of widths `hidden_sizes` over `input_size` inputs.

  Layer l reads layer l-1's whole output sequence (Keras' `return_sequences=True`) and
  its own carry from the previous step. Dropout with rate `dropout` sits between layers,
  never after the last (as in PyTorch), and acts only when `apply(..., train=True,
  key=key)`.

  Args:
    cell: "rnn", "lstm" or "gru".
    input_size: F, the feature width of xs [batch, time, F].
    hidden_sizes: widths of the layers, bottom first, e.g. (64, 64, 64).
    nonlinearity: "tanh" (default) or "relu"; "rnn" only.
    forget_bias: LSTM forget-gate bias at init (default 1).
    dropout: rate in [0, 1) of the dropout between layers.
    unroll: time steps per iteration of the time scan.
    kernel_init, recurrent_init, bias_init: a name from `jax.nn.initializers` (e.g.
      "glorot_uniform", "he_normal", "orthogonal") or a callable (key, shape, dtype).

  Example:
    >>> model = stacked_rnn("lstm", input_size=32, hidden_sizes=(64, 64))
    >>> params = model.init(jax.random.key(0))
    >>> ys, state = model.apply(params, jnp.ones((8, 20, 32)))   # ys [8, 20, 64]
  """
  hidden_sizes = checks.check_hidden_sizes(hidden_sizes)
  if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size <= 0:
    raise ValueError(f"input_size: expected a positive int, got {input_size!r}")
  dropout = checks.check_dropout(dropout)
  if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
    raise ValueError(f"unroll: expected a positive int, got {unroll!r}")
  cells = tuple(make_cell(cell, h, nonlinearity=nonlinearity, forget_bias=forget_bias,
                          kernel_init=kernel_init, recurrent_init=recurrent_init,
                          bias_init=bias_init) for h in hidden_sizes)
  widths = (input_size,) + hidden_sizes
  groups = _group_layers(widths)
  L = len(cells)

  def init(key, dtype=jnp.float32):
    keys = jax.random.split(key, L)
    per_layer = [c.init(k, w, dtype) for c, k, w in zip(cells, keys, widths)]
    return tuple(jax.tree.map(lambda *a: jnp.stack(a), *per_layer[first:first + count])
                 for first, count in groups)

  def initial_state(batch_size, dtype=jnp.float32):
    return tuple(c.initial_carry(batch_size, dtype) for c in cells)

  def _prepare(params, xs, lengths, initial_state_, train, key):
    checks.check_xs(xs, input_size)
    B, T, _ = xs.shape
    lengths = checks.check_lengths(lengths, B, T)
    if initial_state_ is None:
      state = initial_state(B, xs.dtype)
    else:
      state = checks.check_initial_state(initial_state_, cells, B)
    if train and dropout > 0 and key is None:
      raise ValueError("key: dropout > 0 in training needs a PRNG key, got None")
    keys = jax.random.split(key, L) if (train and dropout > 0) else None
    return lengths, state, keys

  def apply(params, xs, lengths=None, initial_state=None, *, train=False, key=None):
    lengths, state, keys = _prepare(params, xs, lengths, initial_state, train, key)
    h = jnp.swapaxes(xs, 0, 1)  # [T, B, F]
    finals = []
    for g, (first, count) in enumerate(groups):
      layer_cell = cells[first]

      def body(h, inp):
        p, carry, k, drop = inp
        if k is not None:  # layer 0 reads xs, which no dropout touches
          h = jnp.where(drop, _dropout(h, k, dropout), h)
        carry, ys = scan_layer(layer_cell, p, h, carry, lengths, unroll=unroll)
        return ys, carry

      group_keys = None if keys is None else keys[first:first + count]
      drop = jnp.arange(first, first + count) > 0
      if count == 1:  # a shape-changing layer: its output cannot be a scan carry
        inp = jax.tree.map(lambda a: a[0], (params[g], None, group_keys, drop))
        h, carry = body(h, (*inp[:1], state[first], *inp[2:]))
        finals.append(carry)
        continue
      carries = jax.tree.map(lambda *a: jnp.stack(a), *state[first:first + count])
      h, group_finals = lax.scan(body, h, (params[g], carries, group_keys, drop))
      finals += [jax.tree.map(lambda a: a[i], group_finals) for i in range(count)]
    return jnp.swapaxes(h, 0, 1), tuple(finals)  # [B, T, H]

  def apply_reference(params, xs, lengths=None, initial_state=None, *, train=False, key=None):
    lengths, state, keys = _prepare(params, xs, lengths, initial_state, train, key)
    h = jnp.swapaxes(xs, 0, 1)  # [T, B, F]
    finals = []
    for l, c in enumerate(cells):
      if keys is not None and l > 0:
        h = _dropout(h, keys[l], dropout)
      carry, h = loop_layer(c, layer_params(model, params, l), h, state[l], lengths)
      finals.append(carry)
    return jnp.swapaxes(h, 0, 1), tuple(finals)

  def step(params, state, x_t):
    new_state = []
    for l, c in enumerate(cells):
      carry, x_t = c.step(layer_params(model, params, l), state[l], x_t)
      new_state.append(carry)
    return tuple(new_state), x_t

  model = StackedRNN(init=init, apply=apply, apply_reference=apply_reference,
                     initial_state=initial_state, step=step, cells=cells,
                     input_size=input_size, hidden_sizes=hidden_sizes, dropout=dropout,
                     groups=groups)
  return model


def count_params(params) -> int:
  """Number of scalars in a pytree of arrays."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
