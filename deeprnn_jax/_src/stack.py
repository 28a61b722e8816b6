"""The stack: `stacked_rnn`, a facade of options, and `compose`, the stack from its parts.

Each idea lives in its own subpackage (core < cells < loops < layers < schedules, each
importing only those before it): the cell maths (`cells/`), the time loops (`loops/`),
the wrappers that make a layer of a cell (`layers/`) and the schedules that run a group
of equal layers (`schedules/`). `compose` builds a stack from cells, wrappers, a time loop
and a schedule, checking each feature against what the strategies declare they support
(`core/options.py`); `stacked_rnn` turns its keyword options into those parts.
"""

from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple

import jax

from deeprnn_jax._src import layers
from deeprnn_jax._src import registry
from deeprnn_jax._src.cells import make_cell
from deeprnn_jax._src.core import checks
from deeprnn_jax._src.core import layout
from deeprnn_jax._src.core.options import Options, check_supported
from deeprnn_jax._src.core.types import Cell, Schedule, TimeLoop
from deeprnn_jax._src.layers.base import Wrapper, recurrent
from deeprnn_jax._src.layers.precision import with_precision
from deeprnn_jax._src.runner import Runner

SCHEDULES = tuple(registry.ENTRIES[Schedule])


class StackedRNN(NamedTuple):
  """A stack of recurrent layers as pure functions, made by `stacked_rnn`.

  Attributes:
    init: `init(key, dtype=float32) -> params`, a tuple of per-group dicts of arrays.
    apply: `apply(params, xs, lengths=None, initial_state=None, *, train=False, key=None,
      output="sequence", resets=None) -> (ys, state)`; xs [batch, time, input_size]; ys as `output`
      selects: "sequence" [batch, time, D*hidden_sizes[-1]] (D = 2 if bidirectional
      else 1), "last" [batch, D*hidden_sizes[-1]] at each sequence's last valid step, or
      "all", every layer's sequence; state a tuple with one carry per layer, a
      (forward, backward) pair of carries per layer when bidirectional. `output` and
      `train` are Python values: under `jax.jit` mark them static
      (`jax.jit(model.apply, static_argnames=("output", "train"))`).
    apply_reference: same signature and numbers as `apply`, run by Python loops over
      layers and time steps (slow; for tests).
    initial_state: `initial_state(batch_size, dtype=float32)`: zeros, one carry per layer
      (give the params' dtype for float64 params: a narrower state is refused).
    step: `step(params, state, x_t, reset=None) -> (state, y_t)`, one time step through
      every layer (x_t [batch, input_size]; reset bool [batch]: those rows restart from
      zeros first), for streaming inference; not for bidirectional stacks.
    cells: the Cell of every layer.
    input_size, hidden_sizes, dropout: as given to `stacked_rnn`.
    groups: (first layer, number of layers) of every group of equally shaped layers.
    bidirectional, residual, recurrent_dropout, variational, compute_dtype, schedule,
      time_loop: as given to `stacked_rnn` (compute_dtype None or a numpy dtype; schedule
      and time_loop by name).
    layers: the `Layer` of every layer (`layers/base.py`), the cell with its wrappers.
    options: the checked, frozen `Options` the stack was built with.
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
  layers: Tuple[Any, ...] = ()
  time_loop: str = "scan"
  options: Any = None




def layer_params(model: StackedRNN, params, layer: int):
  """The parameter dict of one layer, taken out of its group's stacked arrays.

  For a bidirectional stack it is {"fwd": {...}, "bwd": {...}}, one dict per direction.
  """
  return layout.layer_params(model.groups, params, layer)


def _make_cells(cell, hidden_sizes, **options):
  if callable(cell) and not isinstance(cell, str):
    cells = tuple(cell(h) for h in hidden_sizes)
    for l, c in enumerate(cells):
      if not isinstance(c, Cell):
        raise TypeError(f"cell: expected a name or a function hidden_size -> Cell, got a "
                        f"function returning {type(c).__name__} for layer {l}")
    return cells
  return tuple(make_cell(cell, h, **options) for h in hidden_sizes)



def stacked_rnn(cell, input_size: int, hidden_sizes, *, nonlinearity: Optional[str] = None,
                forget_bias: float = 1.0, dropout: float = 0.0, unroll: int = 1,
                kernel_init=None, recurrent_init=None, bias_init=None,
                bidirectional: bool = False, residual: bool = False, layer_norm: bool = False,
                recurrent_dropout: float = 0.0, variational: bool = False,
                compute_dtype=None, remat: bool = False,
                schedule="layer", proj_size: Optional[int] = None,
                time_loop="scan", wrappers: Sequence[Wrapper] = ()) -> StackedRNN:
  """Builds a stack of `cell` layers of widths `hidden_sizes` over `input_size` inputs.

  Layer l reads layer l-1's whole output sequence (Keras' `return_sequences=True`) and
  its own carry from the previous step. Dropout with rate `dropout` sits between layers,
  never after the last (as in PyTorch), and acts only when `apply(..., train=True,
  key=key)`.

  Args:
    cell: "rnn", "lstm" or "gru", or a function `hidden_size -> Cell` for a cell of your
      own (a `drnn.Cell`: init, project, recur, step, initial_carry; its carry an array
      h or a NamedTuple with a field h, its output y = h); it gets lengths, resets,
      dropout, bidirectional, residual, every schedule and the diagnostics.
    input_size: F, the feature width of xs [batch, time, F].
    hidden_sizes: widths of the layers, bottom first, e.g. (64, 64, 64).
    nonlinearity: "tanh" (default) or "relu"; "rnn" only.
    forget_bias: LSTM forget-gate bias at init (default 1).
    dropout: rate in [0, 1) of the dropout between layers.
    unroll: time steps per iteration of the time scan.
    remat: rematerialise for long sequences: each layer keeps only about sqrt(T) carries
      for the backward pass and recomputes the rest (`loops.scan.remat_scan_layer`); same
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
      (`schedules/wavefront.py`); same numbers and dropout masks; not with bidirectional,
      recurrent_dropout or remat. "pipeline", or a Schedule object such as
      `drnn.pipeline(axis, chunk_size)`, splits each group of equal layers over the
      devices of a mesh axis (`schedules/pipeline.py`; by name: axis "stage", chunks of 16).
    time_loop: how each layer runs over time: "scan" (default), `lax.scan`; "cudnn",
      cuDNN's fused LSTM through `jax.experimental.rnn.lstm` (GPUs; LSTM cells without
      layer_norm, proj_size, recurrent_dropout, remat or a compute_dtype, float32, no
      resets; `loops/cudnn.py`); or a TimeLoop (`drnn.cudnn_time_loop(kernel)`).
    wrappers: more layer wrappers (`drnn.layers`, e.g. `drnn.zoneout(0.1)`), applied to
      every layer innermost, right around its cell, before the ones the options above
      ask for.

  `apply(..., resets=)` takes a bool [batch, time]: where it holds, the row's carry
  restarts from its initial state before that step (several sequences packed in a row;
  Haiku's `ResetCore`), in both directions (the backward one restarts where a segment
  ends), with every schedule; `step(..., reset=)` is the streaming form.

  Dropout masks come from `key`: layer l uses `jax.random.split(key, L)[l]` for its input
  dropout and `fold_in` of it with 1 (forward) or 2 (backward) for its recurrent mask, so
  the same key gives the same masks; each mask is `drnn.keep_mask`'s draw (the rate
  rounded to 1/65536).

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
  checks.check_positive_int(input_size, "input_size")
  dropout = checks.check_dropout(dropout)
  checks.check_flag(remat, "remat")
  checks.check_positive_int(unroll, "unroll")
  for value, name in ((bidirectional, "bidirectional"), (residual, "residual"),
                      (variational, "variational"), (layer_norm, "layer_norm")):
    checks.check_flag(value, name)
  recurrent_dropout = checks.check_rate(recurrent_dropout, "recurrent_dropout")
  chain = list(_check_wrappers(wrappers))
  if recurrent_dropout > 0:
    chain.append(layers.recurrent_dropout(recurrent_dropout))
  if bidirectional:
    chain.append(layers.bidirectional())
  if dropout > 0:
    chain.append(layers.input_dropout(dropout, variational))
  if residual:
    chain.append(layers.residual())
  extra = {"layer_norm": True} if layer_norm else {}
  if proj_size is not None:
    extra["proj_size"] = proj_size
  make = lambda: _make_cells(cell, hidden_sizes, nonlinearity=nonlinearity,
                             forget_bias=forget_bias, kernel_init=kernel_init,
                             recurrent_init=recurrent_init, bias_init=bias_init, **extra)
  return _compose(make, input_size, chain, time_loop, schedule, unroll, remat, compute_dtype,
                  variational=variational)


def compose(cells: Sequence[Cell], input_size: int, *, wrappers: Sequence[Wrapper] = (),
            time_loop="scan", schedule="layer", unroll: int = 1, remat: bool = False,
            compute_dtype=None) -> StackedRNN:
  """A stack from its parts: one cell per layer, the wrappers of every layer, a time loop
  and a schedule, the way `optax.chain` builds an optimizer from transformations.

  `stacked_rnn(...)` is `compose` of the cells and wrappers its options name; `compose`
  takes any of them, your own included, and gives the same `init`, `apply`,
  `apply_reference` and `step` with every feature (lengths, resets, the depth scan,
  sharding, the diagnostics).

  Args:
    cells: the `Cell` of every layer, bottom first (e.g. `[drnn.lstm(64), drnn.lstm(64)]`).
    input_size: F, the feature width of xs [batch, time, F].
    wrappers: `Wrapper`s from `drnn.layers` (or your own), innermost first, applied to
      every layer around `with_precision(recurrent(cell))`; e.g. `[drnn.zoneout(0.1),
      drnn.layers.bidirectional(), drnn.layers.input_dropout(0.3)]`.
    time_loop: a name ("scan", "cudnn") or a `TimeLoop`.
    schedule: a name ("layer", "wavefront", "pipeline") or a `Schedule`.
    unroll, remat, compute_dtype: as for `stacked_rnn`.

  Returns:
    The `StackedRNN`; a ValueError names any feature the time loop or schedule does not
    support.

  Example:
    >>> model = drnn.compose([drnn.gru(32), drnn.gru(32)], 8,
    ...                      wrappers=[drnn.zoneout(0.1), drnn.layers.residual()])
    >>> params = model.init(jax.random.key(0))
  """
  cells = tuple(cells)
  if not cells or not all(isinstance(c, Cell) for c in cells):
    raise TypeError(f"cells: expected a non-empty sequence of drnn.Cell, got "
                    f"{[type(c).__name__ for c in cells] or cells!r}")
  checks.check_positive_int(input_size, "input_size")
  checks.check_positive_int(unroll, "unroll")
  checks.check_flag(remat, "remat")
  return _compose(lambda: cells, input_size, list(_check_wrappers(wrappers)), time_loop,
                  schedule, unroll, remat, compute_dtype)


def _check_wrappers(wrappers):
  for i, w in enumerate(wrappers):
    if not isinstance(w, Wrapper):
      raise TypeError(f"wrappers[{i}]: expected a Wrapper such as drnn.zoneout(0.1), got "
                      f"{type(w).__name__}")
    yield w


def _options(chain, cells, time_loop, schedule, unroll, remat, compute_dtype, variational):
  features = tuple(f for w in chain for f in w.features)
  given = dict(features)
  return Options(dropout=given.get("dropout", 0.0),
                 variational=given.get("variational", False) if variational is None
                 else variational,
                 recurrent_dropout=given.get("recurrent_dropout", 0.0),
                 bidirectional=given.get("bidirectional", False),
                 residual=given.get("residual", False),
                 layer_norm=any(c.layer_norm for c in cells), unroll=unroll, remat=remat,
                 compute_dtype=compute_dtype, schedule=schedule, time_loop=time_loop,
                 wrappers=features)


def _compose(make_cells, input_size, chain, time_loop, schedule, unroll, remat,
             compute_dtype, variational=None):
  compute_dtype = checks.check_compute_dtype(compute_dtype)
  schedule = registry.resolve("schedule", Schedule, schedule)
  probe = _options(chain, (), None, schedule, unroll, remat, compute_dtype, variational)
  check_supported("schedule", schedule, probe)
  time_loop = registry.resolve("time_loop", TimeLoop, time_loop)
  cells = make_cells()
  o = _options(chain, cells, time_loop, schedule, unroll, remat, compute_dtype, variational)
  check_supported("schedule", schedule, o)
  check_supported("time_loop", time_loop, o)
  time_loop.check(o, cells)
  layer_list = []
  for c in cells:
    layer = with_precision(recurrent(c))
    for wrapper in chain:
      layer = wrapper(layer)
    layer_list.append(layer)
  layer_list = tuple(layer_list)
  widths = (input_size,) + tuple(layer.width for layer in layer_list)  # what each reads
  groups = layout.group_shapes([(widths[l], c.hidden_size, getattr(c, "output_size", None))
                                for l, c in enumerate(cells)])
  run = Runner(layer_list, groups, o, input_size)
  return StackedRNN(init=run.init, apply=run.apply, apply_reference=run.apply_reference,
                    initial_state=run.initial_state, step=run.step, cells=cells,
                    input_size=input_size, hidden_sizes=tuple(c.hidden_size for c in cells),
                    dropout=o.dropout, groups=groups, bidirectional=o.bidirectional,
                    residual=o.residual, recurrent_dropout=o.recurrent_dropout,
                    variational=o.variational, compute_dtype=o.compute_dtype,
                    schedule=schedule.name, layers=layer_list, time_loop=time_loop.name,
                    options=o)


def count_params(params) -> int:
  """Number of scalars in a pytree of arrays."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
