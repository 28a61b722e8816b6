"""The benchmark grid: named grids, their overrides, and the ordered list of benchmarks.

A setting comes from a pytest option `--bench-NAME` or else the environment variable
`DEEPRNN_BENCH_NAME` (NAME upper-cased), else the grid's default:

    grid      quick (default) or full
    impl      comma list of deeprnn_jax, flax, torch, keras, or impl labels
    opts      JSON stacked_rnn kwargs for deeprnn_jax: an object or a list of objects
              (the option may repeat); each set becomes an impl "deeprnn_jax[k=v,...]"
    cells     comma list of rnn, lstm, gru
    hidden    comma list of widths H
    depth     comma list of depths L
    batch     B
    time      T
    features  F
    seconds   steady-state seconds to spend per benchmark
    isolate   1: measure each benchmark alone in a process of its own
              (measure_point.py; the full grid's default), 0: in the pytest process
              (the quick grid's, for the code paths in CI)
"""

from typing import Callable, Mapping, NamedTuple, Optional

import workloads as wl

GRIDS = {
    "quick": dict(cells=("rnn", "lstm", "gru"), hidden=(16,), depth=(1, 2), batch=4,
                  time=10, features=32, seconds=0.05, isolate=False),  # CI: the code paths
    "full": dict(cells=("rnn", "lstm", "gru"), hidden=(128, 256), depth=(1, 2, 4, 8, 16),
                 batch=64, time=100, features=32, seconds=1.5, isolate=True),  # published
}
SIZES = ("cells", "hidden", "depth", "batch", "time", "features", "seconds")
SETTINGS = ("grid", "impl", "opts", "isolate") + SIZES
LISTS = ("cells", "hidden", "depth")
INTS = ("hidden", "depth", "batch", "time", "features")


class Point(NamedTuple):
  """One benchmark: a grid point and the impl that runs it."""

  spec: wl.Spec
  impl: str  # base name: deeprnn_jax, flax, torch or keras
  label: str  # impl as reported, e.g. "deeprnn_jax[unroll=2]" for an option set
  opts: dict  # stacked_rnn kwargs (deeprnn_jax only)
  seconds: float  # steady-state time to aim for
  isolate: bool = False  # measured alone in a process of its own (measure_point.py)


def setting(option: Callable[[str], Optional[object]], environ: Mapping[str, str], name):
  """`option(name)` where given, else $DEEPRNN_BENCH_<NAME>, else None."""
  value = option(name)
  if value is None:
    value = environ.get(f"DEEPRNN_BENCH_{name.upper()}") or None
  return value


def _parse(name, text):
  items = [t.strip() for t in str(text).split(",") if t.strip()]
  try:
    values = [int(t) if name in INTS else float(t) if name == "seconds" else t for t in items]
  except ValueError:
    raise ValueError(f"--bench-{name}: expected a comma list of "
                     f"{'ints' if name in INTS else 'numbers'}, got {text!r}") from None
  if name == "cells":
    if not values or not set(values) <= set(wl.GATES):
      raise ValueError(f"--bench-cells: expected some of {sorted(wl.GATES)}, got {text!r}")
  elif not values or min(values) <= 0:
    raise ValueError(f"--bench-{name}: expected positive values, got {text!r}")
  if name not in LISTS and len(values) != 1:
    raise ValueError(f"--bench-{name}: expected one value, got {text!r}")
  return tuple(values) if name in LISTS else values[0]


def bench_points(option: Callable[[str], Optional[object]], environ: Mapping[str, str]):
  """The benchmarks of a run, ordered by cell, width, depth and then impl.

  Args:
    option: `option(name)` -> the pytest option `--bench-<name>` or None; for "opts" a
      list of JSON texts (the option repeats) or None.
    environ: the environment (`os.environ`).

  Returns:
    a list of `Point`; the impls of one grid point are adjacent, so that they run back to
    back under the same machine load.

  Raises:
    ValueError: naming the setting, what was expected and what came.
  """
  grid_name = setting(option, environ, "grid") or "quick"
  if grid_name not in GRIDS:
    raise ValueError(f"--bench-grid / DEEPRNN_BENCH_GRID: expected one of {sorted(GRIDS)}, "
                     f"got {grid_name!r}")
  grid = dict(GRIDS[grid_name])
  for name in SIZES:
    text = setting(option, environ, name)
    if text is not None:
      grid[name] = _parse(name, text)
  isolate = setting(option, environ, "isolate")
  if isolate is not None:
    if str(isolate) not in ("0", "1"):
      raise ValueError(f"--bench-isolate: expected 0 or 1, got {isolate!r}")
    grid["isolate"] = str(isolate) == "1"
  texts = option("opts") or [environ.get("DEEPRNN_BENCH_OPTS")]
  opt_sets = [s for text in texts for s in wl.parse_opts(text)]
  impls = [("deeprnn_jax", wl.impl_label(s), s) for s in opt_sets]
  impls += [("flax", "flax", {}), ("torch", "torch", {}), ("keras", "keras", {})]
  wanted = setting(option, environ, "impl")
  if wanted is not None:
    names = {t.strip() for t in wanted.split(",") if t.strip()}
    known = {i for i, _, _ in impls} | {label for _, label, _ in impls}
    if not names or not names <= known:
      raise ValueError(f"--bench-impl: expected some of {sorted(known)}, got {wanted!r}")
    impls = [(i, label, s) for i, label, s in impls if i in names or label in names]
  return [Point(wl.Spec(cell, hidden, depth, grid["batch"], grid["time"], grid["features"]),
                impl, label, opts, grid["seconds"], grid["isolate"])
          for cell in grid["cells"] for hidden in grid["hidden"] for depth in grid["depth"]
          for impl, label, opts in impls]


def point_id(p: Point) -> str:
  """"lstm-H256-L04-flax": the depth zero-padded so that `-k L01` does not pick L16."""
  return f"{p.spec.cell}-H{p.spec.hidden}-L{p.spec.depth:02d}-{p.label}"
