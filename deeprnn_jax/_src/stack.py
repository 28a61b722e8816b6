"""The stack: `stacked_rnn`, a facade that composes cells, layer wrappers and schedules.

Each idea lives in its own file: the cell maths (`cells.py`), the time loops
(`unroll.py`), the wrappers that make a layer of a cell (`layers.py`, `precision.py`,
`dropout.py`, `bidirectional.py`, `residual.py`), the parameter layout (`layout.py`) and
the schedules that run a group of equal layers (`schedules.py`). This file checks the
options, builds each layer's wrapper chain and runs the groups.
"""

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax

from deeprnn_jax._src import bidirectional as bidir
from deeprnn_jax._src import checks
from deeprnn_jax._src import dropout as drop_lib
from deeprnn_jax._src import layout
from deeprnn_jax._src import precision
from deeprnn_jax._src import schedules
from deeprnn_jax._src import time_loops
from deeprnn_jax._src.base import Cell
from deeprnn_jax._src.cells import make_cell
from deeprnn_jax._src.layers import recurrent
from deeprnn_jax._src.residual import residual as residual_layer
from deeprnn_jax._src.runner import Runner

SCHEDULES = tuple(schedules.SCHEDULES)


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
    initial_state: `initial_state(batch_size, dtype=float32)`: zeros, one carry per layer.
    step: `step(params, state, x_t, reset=None) -> (state, y_t)`, one time step through
      every layer (x_t [batch, input_size]; reset bool [batch]: those rows restart from
      zeros first), for streaming inference; not for bidirectional stacks.
    cells: the Cell of every layer.
    input_size, hidden_sizes, dropout: as given to `stacked_rnn`.
    groups: (first layer, number of layers) of every group of equally shaped layers.
    bidirectional, residual, recurrent_dropout, variational, compute_dtype, schedule,
      time_loop: as given to `stacked_rnn` (compute_dtype None or a numpy dtype; schedule
      and time_loop by name).
    layers: the `Layer` of every layer (`layers.py`), the cell with its wrappers.
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


def _make_layer(cell, o):
  """The wrapper chain of one layer, innermost first."""
  layer = precision.with_precision(recurrent(cell))
  if o["recurrent_dropout"] > 0:
    layer = drop_lib.recurrent_dropout(layer, o["recurrent_dropout"])
  if o["bidirectional"]:
    layer = bidir.bidirectional(layer)
  if o["dropout"] > 0:
    layer = drop_lib.input_dropout(layer, o["dropout"], o["variational"])
  return residual_layer(layer) if o["residual"] else layer


def _check_options(input_size, dropout, unroll, remat, bidirectional, residual, layer_norm,
                   recurrent_dropout, variational, compute_dtype, schedule, time_loop="scan"):
  if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size <= 0:
    raise ValueError(f"input_size: expected a positive int, got {input_size!r}")
  o = dict(dropout=checks.check_dropout(dropout), remat=checks.check_flag(remat, "remat"),
           unroll=checks.check_positive_int(unroll, "unroll"),
           bidirectional=checks.check_flag(bidirectional, "bidirectional"),
           residual=checks.check_flag(residual, "residual"),
           variational=checks.check_flag(variational, "variational"),
           recurrent_dropout=checks.check_rate(recurrent_dropout, "recurrent_dropout"),
           compute_dtype=checks.check_compute_dtype(compute_dtype))
  o["schedule"] = _schedule(schedule)
  o["schedule"].check(o)
  o["layer_norm"] = checks.check_flag(layer_norm, "layer_norm")
  o["time_loop"] = time_loops.named(time_loop)
  return o


def _schedule(schedule):
  """A schedule's name, or a Schedule object (e.g. `pipeline(...)`) -> the Schedule."""
  if isinstance(schedule, schedules.Schedule):
    return schedule
  if not isinstance(schedule, str) or schedule not in schedules.SCHEDULES:
    raise ValueError(f"schedule: expected one of {SCHEDULES} or a Schedule such as "
                     f"drnn.pipeline(...), got {schedule!r}")
  return schedules.SCHEDULES[schedule]


def stacked_rnn(cell, input_size: int, hidden_sizes, *, nonlinearity: Optional[str] = None,
                forget_bias: float = 1.0, dropout: float = 0.0, unroll: int = 1,
                kernel_init=None, recurrent_init=None, bias_init=None,
                bidirectional: bool = False, residual: bool = False, layer_norm: bool = False,
                recurrent_dropout: float = 0.0, variational: bool = False,
                compute_dtype=None, remat: bool = False,
                schedule: str = "layer", proj_size: Optional[int] = None,
                time_loop="scan") -> StackedRNN:
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
      recurrent_dropout or remat. Or a Schedule object: `drnn.pipeline(axis, chunk_size)`
      splits each group of equal layers over the devices of a mesh axis (`pipeline.py`).
    time_loop: how each layer runs over time: "scan" (default), `lax.scan`; "cudnn",
      cuDNN's fused LSTM through `jax.experimental.rnn.lstm` (GPUs; LSTM cells without
      layer_norm, proj_size, recurrent_dropout, remat or a compute_dtype, float32, no
      resets; `cudnn.py`); or a TimeLoop (`drnn.cudnn_time_loop(kernel)`).

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
  o = _check_options(input_size, dropout, unroll, remat, bidirectional, residual, layer_norm,
                     recurrent_dropout, variational, compute_dtype, schedule, time_loop)
  extra = {"layer_norm": True} if o["layer_norm"] else {}
  if proj_size is not None:
    extra["proj_size"] = proj_size
  cells = _make_cells(cell, hidden_sizes, nonlinearity=nonlinearity, forget_bias=forget_bias,
                      kernel_init=kernel_init, recurrent_init=recurrent_init,
                      bias_init=bias_init, **extra)
  o["time_loop"].check(o, cells)
  layers = tuple(_make_layer(c, o) for c in cells)
  widths = (input_size,) + tuple(layer.width for layer in layers)  # what each layer reads
  groups = layout.group_shapes([(widths[l], c.hidden_size, getattr(c, "output_size", None))
                                for l, c in enumerate(cells)])
  run = Runner(layers, groups, o, input_size, o["schedule"])
  return StackedRNN(init=run.init, apply=run.apply, apply_reference=run.apply_reference,
                    initial_state=run.initial_state, step=run.step, cells=cells,
                    input_size=input_size, hidden_sizes=hidden_sizes, dropout=o["dropout"],
                    groups=groups, bidirectional=o["bidirectional"], residual=o["residual"],
                    recurrent_dropout=o["recurrent_dropout"], variational=o["variational"],
                    compute_dtype=o["compute_dtype"], schedule=o["schedule"].name,
                    layers=layers, time_loop=o["time_loop"].name)


def count_params(params) -> int:
  """Number of scalars in a pytree of arrays."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
