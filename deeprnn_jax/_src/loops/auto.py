"""time_loop="auto": oneDNN's fused loop where it runs and is faster, the scan elsewhere.

Each layer's loop is chosen from what the stack knows when it is built (cell, width,
options) and, at trace time, from the call (dtype, resets, backend); `choices(rnn)`
says which loop each layer runs and why, before anything is traced. The rule:

- oneDNN (`loops/onednn.py`) for the library's plain LSTM and GRU cells of width
  >= MIN_WIDTH, float32, on the CPU, without resets, where the stack's options are ones
  it supports (dropout between layers, residual, bidirectional; not recurrent dropout,
  layer norm, projections, remat, the wavefront or pipeline schedules) and the kernel
  is built and oneDNN installed;
- the scan (`loops/scan.py`) everywhere else, with the reason; also where the batch is
  split over several CPU devices (a mesh of virtual devices, one per core), whose
  oneDNN calls would take turns on all the cores while their scans run side by side.

MIN_WIDTH is where the fused loop stopped losing to the scan: at H = 5 (the seed model)
the scan's per-step cost is lower than oneDNN's per-call and per-step overhead
(benchmarks/test_bench_fused.py and docs/performance show the measured ratios).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from deeprnn_jax._src.core import sharding
from deeprnn_jax._src.core.options import ANY, default_of
from deeprnn_jax._src.core.types import TimeLoop
from deeprnn_jax._src.loops import onednn
from deeprnn_jax._src.loops import scan
from deeprnn_jax._src.loops.onednn_kernel import library

MIN_WIDTH = 16


class Choice(NamedTuple):
  """The time loop of one layer: `time_loop` ("onednn" or "scan") and `reason`."""

  layer: int
  time_loop: str
  reason: str


def _static_reason(options, cell):
  """Why this layer cannot run oneDNN whatever the call, or "" if it can."""
  for feature, value in options.features().items():
    if feature not in onednn.SUPPORTS:
      return f"{feature}={value!r} (oneDNN runs {feature}={default_of(feature)!r} only)"
  if cell.standard not in onednn.KEYS or getattr(cell, "output_size", None):
    what = "with a projection" if getattr(cell, "output_size", None) else "of its own"
    return f"a {cell.kind} cell {what}, not the plain LSTM or GRU"
  if options.schedule.name != "layer":
    return f"schedule={options.schedule.name!r} (oneDNN runs whole layers)"
  if cell.hidden_size < MIN_WIDTH:
    return f"width {cell.hidden_size} < {MIN_WIDTH}, where the scan is faster"
  status = library.status()
  return status.reason if status.lib is None else ""


def _call_reason(params, carry, xs, resets):
  if resets is not None:
    return "resets (oneDNN cannot restart a carry inside a sequence)"
  dtypes = sorted({str(jnp.dtype(a.dtype)) for a in jax.tree.leaves((params, carry, xs))})
  if dtypes != ["float32"]:
    return f"dtypes {', '.join(dtypes)} (oneDNN runs float32)"
  if jax.default_backend() != "cpu":
    return f"backend {jax.default_backend()!r} (oneDNN runs on the CPU)"
  if sharding.batch_axes(xs, 1) is not None and jax.local_device_count() > 1:
    # every device's call would use all cores, one call at a time; the scans run side by
    # side (the strong preset on 2 virtual devices: 66 ms a step scanning, 75 fused)
    return ("the batch split over this process's CPU devices (their oneDNN calls would "
            "run one at a time)")
  return ""


def _make(options):
  fused, fallback = onednn.ONEDNN.make(options), scan.SCAN.make(options)

  def loop(cell, params, xs, carry, lengths=None, *, reverse=False, resets=None):
    why = _static_reason(options, cell) or _call_reason(params, carry, xs, resets)
    run = fallback if why else fused
    return run(cell, params, xs, carry, lengths, reverse=reverse, resets=resets)

  return loop


def _depth_scan(options, cells):
  """The depth scan only where no layer runs oneDNN (its backward is slower in one)."""
  return all(_static_reason(options, cell) for cell in cells)


AUTO = TimeLoop("auto", _make, supports=ANY, depth_scan=_depth_scan)


def choices(rnn):
  """[Choice per layer]: the loop each layer of `rnn` (a StackedRNN) runs on float32
  inputs without resets on this backend, and why."""
  name = rnn.options.time_loop.name
  out = []
  for l, cell in enumerate(rnn.cells):
    if name != "auto":
      out.append(Choice(l, name, f"time_loop={name!r} was asked for"))
      continue
    why = _static_reason(rnn.options, cell) or (
        "" if jax.default_backend() == "cpu" else f"backend {jax.default_backend()!r}")
    out.append(Choice(l, "scan", why) if why else Choice(
        l, "onednn", f"{cell.standard.upper()} of width {cell.hidden_size} >= {MIN_WIDTH} "
                     f"on the CPU with the oneDNN kernel"))
  return out
