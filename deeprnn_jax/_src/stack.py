"""Stacked RNNs: layers grouped by shape, a depth scan per group, a loop reference.

Consecutive layers with the same (input width, hidden width) form a group whose
parameters are stacked on a leading axis; `lax.scan` runs over that axis, so a stack of
16 equal layers compiles one layer body, not 16. `params` is a tuple with one dict per
group, each leaf shaped [layers_in_group, ...]; a bidirectional stack's group dict is
{"fwd": {...}, "bwd": {...}}, one cell's params per direction, stacked the same way.
"""

import functools
from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src import bidirectional as bidir
from deeprnn_jax._src import checks
from deeprnn_jax._src import dropout as drop_lib
from deeprnn_jax._src import outputs
from deeprnn_jax._src import precision
from deeprnn_jax._src.base import Cell
from deeprnn_jax._src.cells import make_cell
from deeprnn_jax._src.unroll import loop_layer, remat_scan_layer, scan_layer
from deeprnn_jax._src.wavefront import wavefront_group

SCHEDULES = ("layer", "wavefront")


class StackedRNN(NamedTuple):
  """A stack of recurrent layers as pure functions, made by `stacked_rnn`.

  Attributes:
    init: `init(key, dtype=float32) -> params`, a tuple of per-group dicts of arrays.
    apply: `apply(params, xs, lengths=None, initial_state=None, *, train=False, key=None,
      output="sequence") -> (ys, state)`; xs [batch, time, input_size]; ys as `output`
      selects: "sequence" [batch, time, D*hidden_sizes[-1]] (D = 2 if bidirectional
      else 1), "last" [batch, D*hidden_sizes[-1]] at each sequence's last valid step, or
      "all", every layer's sequence; state a tuple with one carry per layer, a
      (forward, backward) pair of carries per layer when bidirectional. `output` and
      `train` are Python values: under `jax.jit` mark them static
      (`jax.jit(model.apply, static_argnames=("output", "train"))`).
    apply_reference: same signature and numbers as `apply`, run by Python loops over
      layers and time steps (slow; for tests).
    initial_state: `initial_state(batch_size, dtype=float32)`: zeros, one carry per layer.
    step: `step(params, state, x_t) -> (state, y_t)`, one time step through every layer
      (x_t [batch, input_size]), for streaming inference; not for bidirectional stacks.
    cells: the Cell of every layer.
    input_size, hidden_sizes, dropout: as given to `stacked_rnn`.
    groups: (first layer, number of layers) of every group of equally shaped layers.
    bidirectional, residual, recurrent_dropout, variational, compute_dtype, schedule: as
      given to `stacked_rnn` (compute_dtype None or a numpy dtype).
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
  bidirectional: bool = False
  residual: bool = False
  recurrent_dropout: float = 0.0
  variational: bool = False
  compute_dtype: Any = None
  schedule: str = "layer"


class _ZeroState(NamedTuple):
  """No initial state given: zeros of this batch size and dtype for every layer."""
  batch: int
  dtype: Any


def _group_shapes(shapes):
  """Groups consecutive layers of equal (in, out) shape: ((first, count), ...)."""
  groups = []
  for l, shape in enumerate(shapes):
    if groups and shape == shapes[groups[-1][0]]:
      groups[-1][1] += 1
    else:
      groups.append([l, 1])
  return tuple((first, count) for first, count in groups)


def _group_layers(widths):
  """Groups consecutive layers of equal (in, out) width: [(first, count), ...]."""
  return _group_shapes([(widths[l], widths[l + 1]) for l in range(len(widths) - 1)])


def layer_params(model: StackedRNN, params, layer: int):
  """The parameter dict of one layer, taken out of its group's stacked arrays.

  For a bidirectional stack it is {"fwd": {...}, "bwd": {...}}, one dict per direction.
  """
  for g, (first, count) in enumerate(model.groups):
    if first <= layer < first + count:
      return jax.tree.map(lambda a: a[layer - first], params[g])
  raise IndexError(f"layer: expected 0 <= layer < {len(model.cells)}, got {layer}")


def _dropout(x, key, rate):
  return drop_lib.elementwise(x, key, rate)


def _check_flag(value, argname):
  if not isinstance(value, bool):
    raise TypeError(f"{argname}: expected True or False, got {value!r}")
  return value


def _check_rate(rate, argname):
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
    raise ValueError(f"{argname}: expected a rate in [0, 1), got {rate!r}")
  return float(rate)


def _check_compute_dtype(dtype):
  if dtype is None:
    return None
  try:
    dtype = jnp.dtype(dtype)
  except TypeError:
    raise TypeError(f"compute_dtype: expected None or a floating dtype such as "
                    f"jnp.bfloat16, got {dtype!r}") from None
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"compute_dtype: expected a floating dtype, got {dtype}")
  return dtype


def _check_schedule(schedule, bidirectional, recurrent_dropout, remat):
  if not isinstance(schedule, str) or schedule not in SCHEDULES:
    raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
  if schedule == "wavefront":  # it steps unidirectional cells of one scan, unmasked
    for name, value, ok in (("bidirectional", bidirectional, False),
                            ("recurrent_dropout", recurrent_dropout, 0.0),
                            ("remat", remat, False)):
      if value != ok:
        raise ValueError(f"schedule: 'wavefront' does not support {name}; expected "
                         f"{name}={ok!r}, got {name}={value!r}")
  return schedule


def stacked_rnn(cell: str, input_size: int, hidden_sizes, *, nonlinearity: Optional[str] = None,
                forget_bias: float = 1.0, dropout: float = 0.0, unroll: int = 1,
                kernel_init=None, recurrent_init=None, bias_init=None,
                bidirectional: bool = False, residual: bool = False, layer_norm: bool = False,
                recurrent_dropout: float = 0.0, variational: bool = False,
                compute_dtype=None, remat: bool = False,
                schedule: str = "layer") -> StackedRNN:
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
    remat: rematerialise for long sequences: each layer keeps only about sqrt(T) carries
      for the backward pass and recomputes the rest (`unroll.remat_scan_layer`); same
      numbers, about a quarter of the activation memory or less, about one more forward.
    kernel_init, recurrent_init, bias_init: a name from `jax.nn.initializers` (e.g.
      "glorot_uniform", "he_normal", "orthogonal") or a callable (key, shape, dtype).
    bidirectional: every layer runs a forward and a backward cell (params
      {"fwd": ..., "bwd": ...}); the backward one reads each sequence from its last valid
      step (respecting `lengths`) down to t = 0; the layer's output is [forward | backward]
      [batch, time, 2H] and its state the pair (forward carry, backward carry).
    residual: from layer 1 on, a layer whose output is as wide as its input adds its
      input: y_l = f_l(dropout(y_{l-1})) + y_{l-1} (Wu et al. 2016, GNMT).
    layer_norm: layer-normalised LSTM/GRU cells (Ba et al. 2016), see `lstm`, `gru`.
    recurrent_dropout: rate in [0, 1) of variational dropout on the hidden state that
      feeds the recurrence, (h_{t-1} * m) @ w_hh with one mask m [batch, H] per sequence
      and direction, the same at every step (Gal & Ghahramani 2016; Keras'
      `recurrent_dropout`); the carry itself is not masked.
    variational: the between-layer `dropout` draws one mask per sequence [batch, features]
      reused at every time step (Gal & Ghahramani 2016) instead of a fresh mask per step.
    compute_dtype: dtype of the matmuls (e.g. jnp.bfloat16; None: the dtype of xs). The
      weights w_ih, w_hh are cast to it inside `apply` (their gradients keep their own
      dtype) and every matmul accumulates into the state dtype, the wider of the
      parameter and compute dtypes (float32 for float32 params), in which biases, gates,
      the cell state and the carry are computed and kept (`precision.py`, as cuDNN and
      automatic mixed precision do). Outputs come in the compute dtype.
    schedule: "layer" (default): each group of equal layers runs layer after layer, L*T
      sequential steps. "wavefront": at wave step s layer l handles time s - l, so a
      group's layers step together in one batched matmul and it takes T + n - 1 steps
      (`wavefront.py`); same numbers and dropout masks; not with bidirectional,
      recurrent_dropout or remat.

  Dropout masks come from `key`: layer l uses `jax.random.split(key, L)[l]` for its input
  dropout and `fold_in` of it with 1 (forward) or 2 (backward) for its recurrent mask, so
  the same key gives the same masks.

  Example:
    >>> model = stacked_rnn("lstm", input_size=32, hidden_sizes=(64, 64))
    >>> params = model.init(jax.random.key(0))
    >>> ys, state = model.apply(params, jnp.ones((8, 20, 32)))   # ys [8, 20, 64]
    >>> bi = stacked_rnn("gru", 32, (64, 64), bidirectional=True, residual=True,
    ...                  recurrent_dropout=0.25, compute_dtype=jnp.bfloat16)
    >>> last, state = bi.apply(bi.init(jax.random.key(0)), jnp.ones((8, 20, 32)),
    ...                        jnp.full((8,), 15), output="last")   # last [8, 128], bf16
  """
  hidden_sizes = checks.check_hidden_sizes(hidden_sizes)
  if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size <= 0:
    raise ValueError(f"input_size: expected a positive int, got {input_size!r}")
  dropout = checks.check_dropout(dropout)
  if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
    raise ValueError(f"unroll: expected a positive int, got {unroll!r}")
  remat = _check_flag(remat, "remat")
  bidirectional = _check_flag(bidirectional, "bidirectional")
  residual = _check_flag(residual, "residual")
  variational = _check_flag(variational, "variational")
  recurrent_dropout = _check_rate(recurrent_dropout, "recurrent_dropout")
  compute_dtype = _check_compute_dtype(compute_dtype)
  schedule = _check_schedule(schedule, bidirectional, recurrent_dropout, remat)
  extra = {"layer_norm": True} if _check_flag(layer_norm, "layer_norm") else {}
  cells = tuple(make_cell(cell, h, nonlinearity=nonlinearity, forget_bias=forget_bias,
                          kernel_init=kernel_init, recurrent_init=recurrent_init,
                          bias_init=bias_init, **extra) for h in hidden_sizes)
  D = 2 if bidirectional else 1
  widths = (input_size,) + tuple(D * h for h in hidden_sizes)  # what each layer reads
  groups = _group_shapes([(widths[l], h) for l, h in enumerate(hidden_sizes)])
  L = len(cells)

  def init(key, dtype=jnp.float32):
    keys = jax.random.split(key, L)
    if bidirectional:
      per_layer = [{d: c.init(kd, w, dtype)
                    for d, kd in zip(bidir.DIRECTIONS, jax.random.split(k))}
                   for c, k, w in zip(cells, keys, widths)]
    else:
      per_layer = [c.init(k, w, dtype) for c, k, w in zip(cells, keys, widths)]
    return tuple(jax.tree.map(lambda *a: jnp.stack(a), *per_layer[first:first + count])
                 for first, count in groups)

  def zero_carry(c, batch_size, dtype):
    if bidirectional:
      return bidir.initial_carries(c, batch_size, dtype)
    return c.initial_carry(batch_size, dtype)

  def initial_state(batch_size, dtype=jnp.float32):
    batch_size = checks.check_batch_size(batch_size)
    return tuple(zero_carry(c, batch_size, dtype) for c in cells)

  @functools.cache
  def param_shapes():
    return jax.eval_shape(init, jax.random.key(0))

  def _prepare(params, xs, lengths, initial_state_, train, key, output):
    checks.check_params(params, param_shapes())
    checks.check_xs(xs, input_size)
    outputs.check_output(output)
    B, T, _ = xs.shape
    lengths = checks.check_lengths(lengths, B, T)
    dtype = jnp.dtype(xs.dtype) if compute_dtype is None else compute_dtype
    state_dtype = precision.state_dtype(precision.first_floating_dtype(params), dtype)
    if initial_state_ is None:  # built per group in `group_carries`
      state = _ZeroState(B, state_dtype)
    elif bidirectional:
      state = bidir.check_state(initial_state_, cells, B)
    else:
      state = checks.check_initial_state(initial_state_, cells, B)
    needs_key = train and (dropout > 0 or recurrent_dropout > 0)
    if needs_key and key is None:
      raise ValueError("key: dropout or recurrent_dropout > 0 in training needs a PRNG key, "
                       "got None")
    if needs_key:
      checks.check_key(key)
    keys = jax.random.split(key, L) if needs_key else None
    params = precision.cast_params(params, dtype, state_dtype)
    return params, xs.astype(dtype), lengths, state, keys

  def group_carries(state, first, count):
    """Layers first..first+count-1's carries stacked [count, ...]. Zeros are made at
    that shape directly, so the program does not grow with depth."""
    if isinstance(state, _ZeroState):
      zero = zero_carry(cells[first], state.batch, state.dtype)
      return jax.tree.map(lambda a: jnp.broadcast_to(a, (count,) + a.shape), zero)
    return jax.tree.map(lambda *a: jnp.stack(a), *state[first:first + count])

  def run_layer(run, layer_cell, p, h, carry, lengths, key, layer):
    """One layer over the whole sequence: h [T, B, in] -> ([T, B, D*H], carry).

    `layer` (an int, or a traced one inside the depth scan) turns off the input dropout
    and the residual of layer 0.
    """
    _, B, F = h.shape
    x = h
    if key is not None and dropout > 0:  # layer 0 reads xs, which no dropout touches
      if variational:  # one mask per sequence, reused at every step
        dropped = h * drop_lib.sequence_mask(key, dropout, B, F, h.dtype)[None]  # [T, B, F]
      else:
        dropped = _dropout(h, key, dropout)
      x = jnp.where(layer > 0, dropped, h)
    names = bidir.DIRECTIONS if bidirectional else (None,)
    carries, ys = [], []
    for d, name in enumerate(names):
      c, pd = layer_cell, (p if name is None else p[name])
      if key is not None and recurrent_dropout > 0:
        mask = drop_lib.sequence_mask(jax.random.fold_in(key, 1 + d), recurrent_dropout, B,
                                      c.hidden_size, h.dtype)
        c, pd = drop_lib.with_recurrent_mask(c, pd, mask)
      c = precision.keep_carry_dtype(c, pd["b"].dtype, carry if name is None else carry[d])
      new_carry, y = run(c, pd, x, carry if name is None else carry[d], lengths,
                         reverse=d == 1)
      carries.append(new_carry)
      ys.append(y)
    y = jnp.concatenate(ys, axis=-1) if bidirectional else ys[0]  # [T, B, D*H]
    if residual and y.shape[-1] == F:
      y = y + jnp.where(layer > 0, h, 0)
    return y, (tuple(carries) if bidirectional else carries[0])

  def _finish(seqs, finals, lengths, output):
    top = jnp.swapaxes(seqs[-1], 0, 1)  # [B, T, D*H]
    if output == "all":
      ys = tuple(jnp.swapaxes(s, 0, 1) for s in seqs)  # each [B, T, D*H_l]
    elif output == "last":
      ys = outputs.last_valid(top, lengths, hidden_sizes[-1] if bidirectional else 0)
    else:
      ys = top
    return ys, tuple(finals)

  def scan_run(c, p, x, carry, lengths, reverse):
    run = remat_scan_layer if remat else scan_layer
    return run(c, p, x, carry, lengths, reverse=reverse, unroll=unroll)

  def wavefront_run(layer_cell, p, h, carries, lengths, keys, layers, keep_all):
    """A group of >= 2 layers by `wavefront_group`, with `run_layer`'s dropout masks (the
    same keys and draws) and residuals; `layers` [n] their indices in the stack."""
    _, B, F = h.shape
    in_masks = None
    if keys is not None and dropout > 0:
      if variational:
        draw = lambda k: jnp.broadcast_to(
            drop_lib.sequence_mask(k, dropout, B, F, h.dtype)[None], h.shape)
      else:
        draw = lambda k: _dropout(jnp.ones(h.shape, h.dtype), k, dropout)
      # layer 0 reads xs, which no dropout touches
      in_masks = jnp.where((layers > 0)[:, None, None, None], jax.vmap(draw)(keys), 1)
    c = precision.keep_carry_dtype(layer_cell, p["b"].dtype, carries)
    return wavefront_group(c, p, h, carries, lengths, in_masks=in_masks,
                           residual_from=(layers > 0) if residual else None, unroll=unroll,
                           keep_all=keep_all)

  def apply(params, xs, lengths=None, initial_state=None, *, train=False, key=None,
            output="sequence"):
    params, xs, lengths, state, keys = _prepare(params, xs, lengths, initial_state, train,
                                                key, output)
    h = jnp.swapaxes(xs, 0, 1)  # [T, B, F]
    finals, seqs = [], []
    for g, (first, count) in enumerate(groups):
      layer_cell = cells[first]

      def body(h, inp):
        p, carry, k, layer = inp
        h, carry = run_layer(scan_run, layer_cell, p, h, carry, lengths, k, layer)
        return h, (carry, h if output == "all" else None)

      group_keys = None if keys is None else keys[first:first + count]
      layers = jnp.arange(first, first + count)
      if count == 1:  # a shape-changing layer: its output cannot be a scan carry
        p, k, layer = jax.tree.map(lambda a: a[0], (params[g], group_keys, layers))
        carry = jax.tree.map(lambda a: a[0], group_carries(state, first, 1))
        h, (carry, _) = body(h, (p, carry, k, layer))
        finals.append(carry)
        seqs.append(h)
        continue
      carries = group_carries(state, first, count)
      if schedule == "wavefront":
        h, group_finals, group_seqs = wavefront_run(layer_cell, params[g], h, carries,
                                                    lengths, group_keys, layers,
                                                    output == "all")
      else:
        h, (group_finals, group_seqs) = lax.scan(body, h, (params[g], carries, group_keys, layers))
      finals += [jax.tree.map(lambda a: a[i], group_finals) for i in range(count)]
      seqs += [h] if group_seqs is None else [group_seqs[i] for i in range(count)]
    return _finish(seqs, finals, lengths, output)

  def apply_reference(params, xs, lengths=None, initial_state=None, *, train=False, key=None,
                      output="sequence"):
    params, xs, lengths, state, keys = _prepare(params, xs, lengths, initial_state, train,
                                                key, output)
    if isinstance(state, _ZeroState):
      state = tuple(zero_carry(c, state.batch, state.dtype) for c in cells)
    h = jnp.swapaxes(xs, 0, 1)  # [T, B, F]
    finals, seqs = [], []
    for l, c in enumerate(cells):
      k = None if keys is None else keys[l]
      h, carry = run_layer(loop_layer, c, layer_params(model, params, l), h, state[l],
                           lengths, k, l)
      finals.append(carry)
      seqs.append(h)
    return _finish(seqs, finals, lengths, output)

  def step(params, state, x_t):
    if bidirectional:
      raise ValueError("step: a bidirectional stack reads each sequence from its end, so "
                       "it cannot run one step at a time; expected bidirectional=False, "
                       "got bidirectional=True")
    if not hasattr(x_t, "ndim") or x_t.ndim != 2 or x_t.shape[-1] != input_size:
      raise ValueError(f"x_t: expected an array [batch, {input_size}], got "
                       f"{getattr(x_t, 'shape', type(x_t).__name__)}")
    checks.check_params(params, param_shapes())
    state = checks.check_initial_state(state, cells, x_t.shape[0], argname="state")
    dtype = jnp.dtype(x_t.dtype) if compute_dtype is None else compute_dtype
    state_dtype = precision.state_dtype(precision.first_floating_dtype(params), dtype)
    params = precision.cast_params(params, dtype, state_dtype)
    x_t = x_t.astype(dtype)
    new_state = []
    for l, c in enumerate(cells):
      c = precision.keep_carry_dtype(c, state_dtype, state[l])
      carry, y = c.step(layer_params(model, params, l), state[l], x_t)
      if residual and l > 0 and y.shape[-1] == x_t.shape[-1]:
        y = y + x_t
      new_state.append(carry)
      x_t = y
    return tuple(new_state), x_t

  model = StackedRNN(init=init, apply=apply, apply_reference=apply_reference,
                     initial_state=initial_state, step=step, cells=cells,
                     input_size=input_size, hidden_sizes=hidden_sizes, dropout=dropout,
                     groups=groups, bidirectional=bidirectional, residual=residual,
                     recurrent_dropout=recurrent_dropout, variational=variational,
                     compute_dtype=compute_dtype, schedule=schedule)
  return model


def count_params(params) -> int:
  """Number of scalars in a pytree of arrays."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
