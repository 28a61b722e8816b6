"""Core types: the `Cell` NamedTuple of pure functions and the named carries."""

from typing import Any, Callable, NamedTuple

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
Carry = Any  # Array [B, H] or LSTMState


class LSTMState(NamedTuple):
  """Carry of an LSTM layer: hidden state `h` [B, H] and cell state `c` [B, H]."""

  h: Array
  c: Array


# for `jax.export`: a serialized function whose inputs or outputs hold one deserializes
# in any process that has imported deeprnn_jax
jax.export.register_namedtuple_serialization(LSTMState, serialized_name="deeprnn_jax.LSTMState")


class Cell(NamedTuple):
  """A recurrent cell as pure functions (the optax `GradientTransformation` pattern).

  Attributes:
    init: `init(key, input_size) -> params`, a dict of arrays.
    project: `project(params, x) -> xp`, the input projection `x @ w_ih + b`
      [..., input_size] -> [..., gates * hidden]; it works on any leading axes, so it can
      run per step (what the time scan does: faster on the CPU) or over all steps at once.
    recur: `recur(params, carry, xp_t) -> (carry, y)`, the recurrent part of one step
      given the projected input; this is the body of the time scan.
    step: `step(params, carry, x) -> (carry, y)`, one whole step from a raw input x
      [B, input_size], in `lax.scan` order: `partial(cell.step, params)` scans directly.
    initial_carry: `initial_carry(batch_size, dtype=float32) -> carry` of zeros.
    hidden_size: H, the width of y and of every part of the carry.
    kind: "rnn", "lstm" or "gru".
    gates: how many H-wide blocks the kernels have (1, 4 or 3).
    layer_norm: whether the cell normalises its projections (Ba et al. 2016).
    output_size: the width of y and of the carry's h when it differs from hidden_size
      (an LSTM with `proj_size`); None otherwise.
    fast_rule: None, or a `fast_scan.FastRule`: the cell's declared hand-written JVP for
      the time scan, written op for op as `recur`. A cell without one gets autodiff.
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
  fast_rule: Any = None
  output_size: Any = None
