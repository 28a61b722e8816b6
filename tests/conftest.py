"""Test-wide settings: strict dtype promotion catches silent float32/float64/bf16 mixing."""

import os

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def rng():
  import numpy as np
  return np.random.default_rng(0)


def pytest_report_header(config):
  return f"jax {jax.__version__} on {jax.devices()[0].platform}; CI={os.environ.get('CI', '')}"
