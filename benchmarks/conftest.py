"""Benchmark grid selection (pytest options and environment variables) and shared fixtures.

    pytest benchmarks/                                  # quick grid: seconds, for CI
    pytest benchmarks/ --bench-grid full --benchmark-json=benchmarks/results/cpu.json
    pytest benchmarks/ --bench-grid full --bench-impl deeprnn_jax,flax --bench-cells lstm \\
        --bench-opts '{}' --bench-opts '{"unroll": 2}'  # compare option sets in one run
    pytest benchmarks/ --bench-opts '{}' --bench-opts '{"devices": 2}'  # the batch split
        # over 2 virtual CPU devices, one per core (docs/performance/lab-notes.md v16)

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

(the grids and the parsing are in grid.py).

The impls of one grid point are collected back to back, so that on a shared,
noisy machine the ratios between them compare steps taken under the same load.

Every peer runs with its own defaults. PyTorch's OpenMP threads spin while they wait for
work by default, which on a quiet machine is what makes its LSTM fast (an earlier suite set
`OMP_WAIT_POLICY=PASSIVE`, which halved torch's speed on this project's Intel machine and
flattered our ratios). On a machine shared with other busy processes the spinning burns
the time slices the working threads need; there, or as a labelled extra row, run
`OMP_WAIT_POLICY=PASSIVE pytest benchmarks/ ...`: the torch rows' device names the policy
torch ran with.
"""

import os
import time

import jax
import jax.numpy as jnp
import pytest

import grid
import workloads as wl


def pytest_addoption(parser):
  group = parser.getgroup("deeprnn_jax benchmarks")
  group.addoption("--bench-grid", choices=sorted(grid.GRIDS), default=None,
                  help="quick (default; tiny sizes, for CI) or full (the published grid)")
  group.addoption("--bench-impl", default=None,
                  help="comma list of impls to run: deeprnn_jax, flax, torch (or a label)")
  group.addoption("--bench-opts", action="append", default=None,
                  help="JSON stacked_rnn kwargs for deeprnn_jax; repeat to compare sets")
  for name in grid.SIZES:
    group.addoption(f"--bench-{name}", default=None,
                    help=f"override the grid's {name} (env DEEPRNN_BENCH_{name.upper()})")
  group.addoption("--bench-isolate", choices=("0", "1"), default=None,
                  help="1: each benchmark alone in a process of its own (the full grid's "
                       "default); 0: in this process (the quick grid's)")


def pytest_configure(config):
  """Virtual CPU devices for option sets that split the batch (`{"devices": N}`): their
  number is fixed when JAX's CPU backend starts, so it is set before any benchmark runs.
  Other impls use the first device only, as without the option."""
  texts = config.getoption("--bench-opts", default=None) or [os.environ.get("DEEPRNN_BENCH_OPTS")]
  try:
    sets = [s for text in texts for s in wl.parse_opts(text)]
  except ValueError:
    return  # the collection reports it
  n = max([d for d in (s.get("devices", 1) for s in sets) if isinstance(d, int)], default=1)
  if n > 1:
    jax.config.update("jax_num_cpu_devices", n)


def _points(config):
  try:
    return grid.bench_points(lambda name: config.getoption(f"--bench-{name}"), os.environ)
  except ValueError as e:
    raise pytest.UsageError(str(e)) from None


def pytest_generate_tests(metafunc):
  if "point" in metafunc.fixturenames:
    points = _points(metafunc.config)
    metafunc.parametrize("point", points, ids=[grid.point_id(p) for p in points])


def pytest_report_header(config):
  name = grid.setting(lambda n: config.getoption(f"--bench-{n}"), os.environ, "grid")
  return (f"deeprnn_jax benchmarks: grid {name or 'quick'}, {len(_points(config))} "
          f"benchmarks on {wl.jax_device_name()}")


@pytest.fixture(autouse=True)
def standard_promotion():
  """JAX's default dtype promotion, which the workloads' users run under.

  tests/conftest.py switches on strict promotion for the whole process when both folders
  run in one pytest session (as in CI); optax's Adam (a Python float raised to an int32
  step count) does not trace under it.
  """
  with jax.numpy_dtype_promotion("standard"):
    yield


@pytest.fixture(scope="session")
def matmul_gflops():
  """float32 GFLOP/s of a jitted 1024x1024x1024 matmul on the default device.

  The fastest of at least 20 repetitions (over at least a second): on a machine shared
  with other work that is the rate the device can reach, where a median would follow the
  load of the moment and could let a later step's MFU exceed 100%.
  """
  n = 1024
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  mm = jax.jit(jnp.matmul).lower(a, b).compile()
  for _ in range(2):
    mm(a, b).block_until_ready()
  times = []
  start = time.perf_counter()
  while len(times) < 20 or (len(times) < 200 and time.perf_counter() - start < 1.0):
    t0 = time.perf_counter()
    mm(a, b).block_until_ready()
    times.append(time.perf_counter() - t0)
  return 2 * n ** 3 / min(times) / 1e9
