"""Test-wide settings: strict dtype promotion catches silent float32/float64/bf16 mixing;
the trainers' caches in a directory of the tests, not the user's ~/.cache."""

import os
import tempfile

import jax
import pytest

import helpers

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
