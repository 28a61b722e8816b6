"""Time loops: strategies that run one layer's cell over time (`stacked_rnn(time_loop=)`).

A time loop is a `TimeLoop(name, make, check)`: `make(options)` returns the function the
layers call,

    loop(cell, params, xs, carry, lengths, *, reverse, resets) -> (final carry, ys)

(xs [T, B, F] time-major, ys [T, B, H]), and `check(options, cells)` raises if the loop
cannot run a stack built with these options and cells. "scan" is `lax.scan` (`unroll.scan_layer`, or
`remat_scan_layer` with `remat`); "cudnn" is cuDNN's fused LSTM on GPUs (`cudnn.py`).
A new backend is a new `TimeLoop`, not a new branch in the layers.
"""

import functools
from typing import Callable, NamedTuple

from deeprnn_jax._src import sharding
from deeprnn_jax._src.unroll import remat_scan_layer, scan_layer


class TimeLoop(NamedTuple):
  name: str
  make: Callable
  check: Callable = lambda options, cells: None


def _make_scan(options):
  return sharding.per_device(functools.partial(
      remat_scan_layer if options["remat"] else scan_layer, unroll=options["unroll"]))


SCAN = TimeLoop("scan", _make_scan)


def named(time_loop):
  """A time loop's name ("scan", "cudnn") or a TimeLoop -> the TimeLoop."""
  from deeprnn_jax._src import cudnn  # it imports jax.experimental.rnn: only when asked
  loops = {"scan": SCAN, "cudnn": cudnn.CUDNN}
  if isinstance(time_loop, TimeLoop):
    return time_loop
  if not isinstance(time_loop, str) or time_loop not in loops:
    raise ValueError(f"time_loop: expected one of {tuple(loops)} or a TimeLoop such as "
                     f"drnn.cudnn_time_loop(...), got {time_loop!r}")
  return loops[time_loop]
