"""Core types: the cell, its named carries and fast rule, and the strategy protocols.

Every layer of the package builds on these NamedTuples of pure functions (the optax
`GradientTransformation` pattern): a `Cell` (cells/), a `FastRule` a cell may declare
for the custom-JVP scan (loops/custom_jvp.py), a `TimeLoop` (loops/), a `Schedule`
(schedules/) and a `Wrapper` (layers/). Each strategy declares what it supports; the
facade checks a stack's features against those declarations (`core/capabilities.py`).
"""

from typing import Any, Callable, FrozenSet, NamedTuple, Optional

import jax

Array = jax.Array
Params = Any  # a pytree of arrays
Carry = Any  # Array [B, H] or LSTMState


class LSTMState(NamedTuple):
  """Carry of an LSTM layer: hidden state `h` [B, H] and cell state `c` [B, H]."""

  h: Array
  c: Array


# for `jax.export`: a serialized function whose inputs or outputs hold one deserializes
# in any process that has imported deeprnn_jax
jax.export.register_namedtuple_serialization(LSTMState, serialized_name="deeprnn_jax.LSTMState")


class FastRule(NamedTuple):
  """A cell's hand-written JVP for the time scan (`loops/custom_jvp.py`).

  Attributes:
    step: `step(params, carry, xp_t) -> ((carry, y), residuals)`: the cell's recurrence
      itself (its `recur` is this function without the residuals), also returning what
      `tangent` needs.
    tangent: `tangent(w_hh, dcarry, u_t, residuals) -> (dcarry, dy)`, the in-loop part
      of the JVP; every op reads a tangent.
    hoisted: `hoisted(params, dparams, xs, dxs, h_prev) -> u [T, B, ...]`, the tangent
      parts that need no recurrence, for all steps at once.
  """

  step: Callable
  tangent: Callable
  hoisted: Callable


class Cell(NamedTuple):
  """A recurrent cell as pure functions (the optax `GradientTransformation` pattern).

  Attributes:
    init: `init(key, input_size, dtype=float32) -> params`, a dict of arrays.
    project: `project(params, x) -> xp`, the input projection `x @ w_ih + b`
      [..., input_size] -> [..., gates * hidden]; it works on any leading axes, so it can
      run per step (what the time scan does: faster on the CPU) or over all steps at once.
    recur: `recur(params, carry, xp_t) -> (carry, y)`, the recurrent part of one step
      given the projected input; this is the body of the time scan.
    step: `step(params, carry, x) -> (carry, y)`, one whole step from a raw input x
      [B, input_size], in `lax.scan` order: `partial(cell.step, params)` scans directly.
    initial_carry: `initial_carry(batch_size, dtype=float32) -> carry` of zeros.
    hidden_size: H, the width of every part of the carry (and of y unless `output_size`).
    kind: a name for the cell ("rnn", "lstm", "gru", or a user's own), used in messages
      and to look up measured tuning choices.
    gates: how many H-wide blocks the kernels have (1, 4 or 3).
    layer_norm: whether the cell normalises its projections (Ba et al. 2016).
    fast_rule: None, or the `FastRule` the cell declares for the custom-JVP time scan.
      A cell without one gets autodiff.
    output_size: the width of y and of the carry's h when it differs from hidden_size
      (an LSTM with `proj_size`); None otherwise.
    standard: None, or the name of the standard equations the cell computes exactly,
      for fused kernels that implement them ("lstm": PyTorch's and cuDNN's LSTM, gates
      i, f, g, o, one bias; "gru": the reset-after GRU; "rnn_tanh", "rnn_relu").
    recurrent_mask: how recurrent dropout masks h: "carry" (mask h before the step; right
      when the cell reads h only through h @ w_hh, as the RNN and LSTM do) or "weights"
      (mask the rows of w_hh; the GRU, which also reads h in its update).
  """

  init: Callable[..., Params]
  project: Callable[..., Array]
  recur: Callable[..., Any]
  step: Callable[..., Any]
  initial_carry: Callable[..., Carry]
  hidden_size: int
  kind: str
  gates: int
  layer_norm: bool = False
  fast_rule: Optional[FastRule] = None
  output_size: Optional[int] = None
  standard: Optional[str] = None
  recurrent_mask: str = "carry"


class TimeLoop(NamedTuple):
  """How each layer runs over time (`stacked_rnn(time_loop=)`).

  Attributes:
    name: the registry name ("scan", "cudnn").
    make: `make(options) -> loop`, with
      `loop(cell, params, xs, carry, lengths, *, reverse, resets) -> (final carry, ys)`
      (xs [T, B, F] time-major, ys [T, B, H]).
    supports: the stack features (`core/capabilities.py`) it can run.
    check: `check(options, cells)` raises for what `supports` cannot say (a cell's
      equations, a dtype).
    depth_scan: whether the "layer" schedule may run a group of equal layers as a
      `lax.scan` over depth (a bool, or `depth_scan(options, cells) -> bool`). A fused
      kernel called once per layer says False: XLA's scan around the kernel's backward
      doubled its time (loops/onednn.py), and a Python loop over the layers costs one
      kernel call each to compile.
  """

  name: str
  make: Callable
  supports: FrozenSet[str] = frozenset()
  check: Callable = lambda options, cells: None
  depth_scan: Any = True


class Schedule(NamedTuple):
  """How a group of n >= 2 equal layers runs (`stacked_rnn(schedule=)`):

      run_group(layer, params, h, carries, ctx, keys, indices, keep_all)
          -> (top output [T, B, W], final carries stacked [n, ...], every layer's
              output [n, T, B, W] or None)

  params and carries stacked on a leading axis of n, keys [n] or None, indices [n] the
  layers' positions in the stack, h [T, B, F]. `supports`: the stack features it can run.
  """

  name: str
  run_group: Callable
  supports: FrozenSet[str] = frozenset()
