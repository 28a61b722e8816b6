"""Test-wide settings: strict dtype promotion catches silent float32/float64/bf16 mixing;
the trainers' caches in a directory of the tests, not the user's ~/.cache; XLA's cheap
compile mode; the slowest test files scheduled first."""

import os
import tempfile

# The suite's programs are tiny and compiled once or twice each, so compiling is most of
# its time: XLA's low optimisation level cuts that by about a fifth (tests/test_stack.py
# 136 -> 104 s; the whole suite 17 min 9 s -> 12 min 53 s on 2 cores) and changes no
# property the tests check (float32 tolerances against references, bitwise relaunches);
# tests/test_golden.py, bit-identical to a recording, computes in a process of its own
# with XLA's defaults. Set before JAX is imported, inherited by the trainer subprocesses;
# DEEPRNN_TESTS_FULL_XLA=1 runs the suite with XLA's default optimisations.
if os.environ.get("DEEPRNN_TESTS_FULL_XLA") != "1":
  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"

import jax  # noqa: E402
import pytest  # noqa: E402

import helpers  # noqa: E402

# Files by their measured time, slowest first (pytest --durations=0 -n 2, session 8). With
# --dist loadfile each file runs whole on one worker; handing out the long ones first
# keeps one worker from starting a 4-minute file while the other has run dry.
SLOWEST_FILES = ("test_trainer_faults.py", "test_stack.py", "test_properties.py",
                 "test_parallel_trainer.py", "test_sharding.py", "test_fast_scan.py",
                 "test_golden.py", "test_wavefront.py", "test_mutation.py",
                 "test_bench_step.py", "test_reference.py", "test_features.py",
                 "test_resets.py", "test_nnx_adapter.py", "test_bench_workloads.py")


def pytest_collection_modifyitems(items):
  """The slowest files first, in SLOWEST_FILES' order; the rest keep theirs (xdist keeps
  this order under --no-loadscope-reorder, set in pyproject's addopts)."""
  rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))

# --data-cache auto (the trainers' default) writes under $XDG_CACHE_HOME; the trainer
# subprocesses inherit this, so they share encoded reviews (each entry is keyed by all
# its inputs, so sharing never changes a result) and the user's home stays untouched
os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(),
                                            f"deeprnn_jax-tests-{os.getuid()}")


@pytest.fixture(autouse=True)
def strict_dtype_promotion():
  """Every library test runs under strict promotion (scoped here, so that benchmarks/,
  collected in the same session, keeps JAX's default, under which optax's Adam traces)."""
  with jax.numpy_dtype_promotion("strict"):
    yield


@pytest.fixture
def rng():
  import numpy as np
  return np.random.default_rng(0)


def pytest_report_header(config):
  return f"jax {jax.__version__} on {jax.devices()[0].platform}; CI={os.environ.get('CI', '')}"


@pytest.fixture
def torch():
  """torch for one test: only that test skips without it (and fails under CI)."""
  return helpers.import_torch()
