"""A layer: a cell run over time by a time loop, as pure functions that wrappers compose.

`recurrent(cell)` is the base layer. Wrappers take a layer and return a layer (one file
each: `bidirectional.py`, `dropout.py`, `residual.py`, `precision.py`, `zoneout.py`), the
way `optax.chain` composes gradient transformations; `stacked_rnn` builds
`residual(input_dropout(bidirectional(recurrent_dropout(with_precision(recurrent(cell))))))`
with the wrappers its options ask for, and `compose` takes any chain of `Wrapper`s. What a layer needs to know about one call (the
lengths, its PRNG key, its index in the stack, the time loop the schedule chose) travels
in a `Context`; a wrapper that changes the cell's step for one call (a recurrent dropout
mask, the carry's dtype) adds a cell transform to it, which the base layer applies.
"""

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from deeprnn_jax._src.core import masking
from deeprnn_jax._src.core.types import Cell


class Context(NamedTuple):
  """One call's settings, passed down through a layer's wrappers.

  Attributes:
    time_loop: `time_loop(cell, params, xs, carry, lengths, *, reverse, resets)` ->
      (carry, ys), e.g. `loops.scan.scan_layer` (the stack's `TimeLoop`).
    unroll: time steps per iteration, for schedules that loop over time themselves.
    lengths: int [B] or None.
    resets: bool [T, B] (time-major) or None: restart the carry from the layer's initial
      carry before these steps.
    key: the layer's PRNG key for dropout, or None (evaluation).
    index: the layer's index in the stack (an int, or a traced int in a depth scan).
    direction: 0 forward, 1 backward (set by `bidirectional`).
    state_dtype, compute_dtype: the precision policy's dtypes for this call.
    cell_transforms: `transform(cell, params, carry, ctx) -> (cell, params)`, applied in
      order by the base layer.
    valid, in_mask, reset, initial: for one step (`Layer.step`): bool [B] (None: every row
      valid), the input dropout's mask [B, F], bool [B] restart flags and the carry to
      restart from.
  """

  time_loop: Optional[Callable] = None
  unroll: int = 1
  lengths: Any = None
  resets: Any = None
  key: Any = None
  index: Any = 0
  direction: int = 0
  state_dtype: Any = None
  compute_dtype: Any = None
  cell_transforms: Tuple[Callable, ...] = ()
  valid: Any = None
  in_mask: Any = None
  reset: Any = None
  initial: Any = None


class Layer(NamedTuple):
  """A recurrent layer as pure functions.

  Attributes:
    init: `init(key, input_width, dtype) -> params`.
    run: `run(params, h, carry, ctx) -> (ys, carry)`, h [T, B, F] -> ys [T, B, width].
    step: `step(params, carry, x, ctx) -> (carry, y)`, one step x [B, F] -> y [B, width].
    initial_carry: `initial_carry(batch, dtype) -> carry` of zeros.
    width: the width of the layer's output.
    cell: the cell inside.
    draw_input_mask: None, or `draw_input_mask(key, shape, dtype)`, the input dropout's
      mask over a whole [T, B, F] sequence (schedules that step layers together draw it
      up front and pass each step's slice as `ctx.in_mask`).
    needs_key: whether training draws random numbers (a PRNG key is then required).
    directions: 2 for a bidirectional layer (output [forward | backward]), else 1.
  """

  init: Callable
  run: Callable
  step: Callable
  initial_carry: Callable
  width: int
  cell: Cell
  draw_input_mask: Optional[Callable] = None
  needs_key: bool = False
  directions: int = 1


class Wrapper(NamedTuple):
  """A layer -> layer transformation, with the stack features it adds (by which time
  loops and schedules are checked, `core/options.py`), e.g. (("zoneout", 0.1),).

  Calling it wraps a layer: `wrapper(layer) -> layer`.
  """

  features: Tuple[Tuple[str, Any], ...]
  wrap: Callable[["Layer"], "Layer"]

  def __call__(self, layer):
    return self.wrap(layer)


def _prepared(cell, params, carry, ctx):
  for transform in ctx.cell_transforms:
    cell, params = transform(cell, params, carry, ctx)
  return cell, params


def recurrent(cell: Cell) -> Layer:
  """The base layer: `cell` over time by `ctx.time_loop`, or one `cell.step`."""

  def run(params, h, carry, ctx):
    c, p = _prepared(cell, params, carry, ctx)
    new_carry, ys = ctx.time_loop(c, p, h, carry, ctx.lengths, reverse=ctx.direction == 1,
                                  resets=ctx.resets)
    return ys, new_carry

  def step(params, carry, x, ctx):
    c, p = _prepared(cell, params, carry, ctx)
    start = carry if ctx.reset is None else masking.restart(ctx.reset, ctx.initial, carry)
    new_carry, y = c.step(p, start, x)
    if ctx.valid is not None:  # a step past the length leaves even a reset undone
      new_carry, y = masking.mask_step(ctx.valid, new_carry, carry, y)
    return new_carry, y

  return Layer(init=cell.init, run=run, step=step, initial_carry=cell.initial_carry,
               width=getattr(cell, "output_size", None) or cell.hidden_size, cell=cell)


def with_cell_transform(layer: Layer, transform) -> Layer:
  """`layer` whose cell is rewritten by `transform(cell, params, carry, ctx)` each call."""

  def add(ctx):
    return ctx._replace(cell_transforms=ctx.cell_transforms + (transform,))

  return layer._replace(run=lambda p, h, c, ctx: layer.run(p, h, c, add(ctx)),
                        step=lambda p, c, x, ctx: layer.step(p, c, x, add(ctx)))
