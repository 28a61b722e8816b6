"""Benchmark grid selection (pytest options and environment variables) and shared fixtures.

    pytest benchmarks/                                  # quick grid: seconds, for CI
    pytest benchmarks/ --bench-grid full --benchmark-json=benchmarks/results/cpu.json
    pytest benchmarks/ --bench-grid full --bench-impl deeprnn_jax,flax --bench-cells lstm \\
        --bench-opts '{}' --bench-opts '{"unroll": 2}'  # compare option sets in one run

Every option has an environment variable (the option wins when both are given):

    --bench-grid      DEEPRNN_BENCH_GRID      quick (default) or full
    --bench-impl      DEEPRNN_BENCH_IMPL      comma list of deeprnn_jax, flax, torch or labels
    --bench-opts      DEEPRNN_BENCH_OPTS      JSON stacked_rnn kwargs (object or list of them)
    --bench-cells     DEEPRNN_BENCH_CELLS     comma list, overrides the grid's cells
    --bench-hidden    DEEPRNN_BENCH_HIDDEN    comma list of widths
    --bench-depth     DEEPRNN_BENCH_DEPTH     comma list of depths
    --bench-batch     DEEPRNN_BENCH_BATCH     batch size B
    --bench-time      DEEPRNN_BENCH_TIME      sequence length T
    --bench-features  DEEPRNN_BENCH_FEATURES  input width F
    --bench-seconds   DEEPRNN_BENCH_SECONDS   steady-state seconds to spend per benchmark

The three impls of one grid point are collected back to back, so that on a shared,
noisy machine the ratios between them compare steps taken under the same load.
"""

import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import workloads as wl

GRIDS = {
    # name: cells, hidden widths, depths, batch, time, features, steady-state seconds
    "quick": dict(cells=("rnn", "lstm", "gru"), hidden=(16,), depth=(1, 2), batch=4,
                  time=10, features=32, seconds=0.05),
    "full": dict(cells=("rnn", "lstm", "gru"), hidden=(128, 256), depth=(1, 2, 4, 8, 16),
                 batch=64, time=100, features=32, seconds=2.0),
}
LISTS = ("cells", "hidden", "depth")
INTS = ("hidden", "depth", "batch", "time", "features")
OPTIONS = ("grid", "impl", "opts", "cells", "hidden", "depth", "batch", "time", "features",
           "seconds")


class Point(NamedTuple):
  """One benchmark: a grid point and the impl that runs it."""

  spec: wl.Spec
  impl: str  # base name: deeprnn_jax, flax or torch
  label: str  # impl as reported: "deeprnn_jax[unroll=2]" for an option set
  opts: dict
  seconds: float  # steady-state time to aim for


def pytest_addoption(parser):
  group = parser.getgroup("deeprnn_jax benchmarks")
  group.addoption("--bench-grid", choices=sorted(GRIDS), default=None,
                  help="quick (default; tiny sizes, for CI) or full (the published grid)")
  group.addoption("--bench-impl", default=None,
                  help="comma list of impls to run: deeprnn_jax, flax, torch (or a label)")
  group.addoption("--bench-opts", action="append", default=None,
                  help="JSON stacked_rnn kwargs for deeprnn_jax; repeat to compare sets")
  for name in OPTIONS[3:]:
    group.addoption(f"--bench-{name}", default=None,
                    help=f"override the grid's {name} (env DEEPRNN_BENCH_{name.upper()})")


def _setting(config, name):
  value = config.getoption(f"--bench-{name}")
  if value is None:
    value = os.environ.get(f"DEEPRNN_BENCH_{name.upper()}") or None
  return value


def _parse(name, text):
  items = [t.strip() for t in str(text).split(",") if t.strip()]
  try:
    values = [int(t) if name in INTS else float(t) if name == "seconds" else t for t in items]
  except ValueError:
    raise pytest.UsageError(f"--bench-{name}: expected a comma list of "
                            f"{'ints' if name in INTS else 'numbers'}, got {text!r}") from None
  if name == "cells" and not set(values) <= set(wl.GATES):
    raise pytest.UsageError(f"--bench-cells: expected some of {sorted(wl.GATES)}, got {text!r}")
  if not values or (name != "cells" and min(values) <= 0):
    raise pytest.UsageError(f"--bench-{name}: expected positive values, got {text!r}")
  return tuple(values) if name in LISTS else values[0]


def bench_points(config):
  """The benchmarks this run collects, in order: cell, width, depth, then impl."""
  grid_name = _setting(config, "grid") or "quick"
  if grid_name not in GRIDS:
    raise pytest.UsageError(f"DEEPRNN_BENCH_GRID: expected one of {sorted(GRIDS)}, "
                            f"got {grid_name!r}")
  grid = dict(GRIDS[grid_name])
  for name in OPTIONS[3:]:
    text = _setting(config, name)
    if text is not None:
      grid[name] = _parse(name, text)
  opts_texts = config.getoption("--bench-opts") or [os.environ.get("DEEPRNN_BENCH_OPTS")]
  try:
    opt_sets = [s for text in opts_texts for s in wl.parse_opts(text)]
  except ValueError as e:
    raise pytest.UsageError(str(e)) from None
  impls = [("deeprnn_jax", wl.impl_label(s), s) for s in opt_sets]
  impls += [("flax", "flax", {}), ("torch", "torch", {})]
  wanted = _setting(config, "impl")
  if wanted is not None:
    names = {t.strip() for t in wanted.split(",") if t.strip()}
    known = {i for i, _, _ in impls} | {label for _, label, _ in impls}
    if not names <= known:
      raise pytest.UsageError(f"--bench-impl: expected some of {sorted(known)}, "
                              f"got {wanted!r}")
    impls = [(i, label, s) for i, label, s in impls if i in names or label in names]
  return [Point(wl.Spec(cell, hidden, depth, grid["batch"], grid["time"], grid["features"]),
                impl, label, opts, grid["seconds"])
          for cell in grid["cells"] for hidden in grid["hidden"] for depth in grid["depth"]
          for impl, label, opts in impls]


def point_id(p: Point) -> str:
  # zero-padded depth, so that `-k L01` does not also select L16
  return f"{p.spec.cell}-H{p.spec.hidden}-L{p.spec.depth:02d}-{p.label}"


def pytest_generate_tests(metafunc):
  if "point" in metafunc.fixturenames:
    points = bench_points(metafunc.config)
    metafunc.parametrize("point", points, ids=[point_id(p) for p in points])


def pytest_report_header(config):
  points = bench_points(config)
  return (f"deeprnn_jax benchmarks: grid {_setting(config, 'grid') or 'quick'}, "
          f"{len(points)} benchmarks on {wl.jax_device_name()}")


@pytest.fixture(scope="session")
def matmul_gflops():
  """float32 GFLOP/s of a jitted 1024x1024x1024 matmul on the default device (median)."""
  n = 1024
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  mm = jax.jit(jnp.matmul).lower(a, b).compile()
  for _ in range(2):
    mm(a, b).block_until_ready()
  times = []
  start = time.perf_counter()
  while len(times) < 10 or (len(times) < 100 and time.perf_counter() - start < 1.0):
    t0 = time.perf_counter()
    mm(a, b).block_until_ready()
    times.append(time.perf_counter() - t0)
  return 2 * n ** 3 / float(np.median(times)) / 1e9
