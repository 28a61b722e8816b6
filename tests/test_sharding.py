"""The library on a mesh of 4 virtual CPU devices equals it on one device.

Each case runs in a process of its own (tests/multidevice/sharded_library.py), so that
the rest of the suite keeps one device. Inputs are sharded over the batch on a mesh whose
axis is Explicit (JAX's default since 0.9: array types carry their sharding, and a scan
carry built replicated used to fail the scan's type check) and, for one case, Auto.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).parent / "multidevice" / "sharded_library.py"
BATCH_SHARDED = "P('data', None)"
# every case, so that one missing from the script's output fails here
CASES = ("lstm_dropout", "gru_wavefront_resets", "lstm_bidirectional_last", "lstm_step",
         "tbptt", "gradient_norms", "train_step", "gru_fsdp", "lstm_dropout_auto")


@pytest.fixture(scope="module")
def results():
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                        env=env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout)


def test_four_devices(results):
  assert results["devices"] == 4


@pytest.mark.parametrize("case", CASES)
def test_sharded_equals_one_device(results, case):
  r = results[case]
  assert "error" not in r, r.get("error")
  # gradients sum over the batch in another order on 4 devices: float32 rounding only
  assert r["diff"] < 2e-6, r


@pytest.mark.parametrize("case", ["lstm_dropout", "lstm_bidirectional_last", "lstm_step"])
def test_carries_follow_the_batch_sharding(results, case):
  """Final states (and step outputs) come back split over "data" on the batch axis,
  with lengths, resets and initial states given replicated or sharded."""
  assert BATCH_SHARDED in results[case]["specs"], results[case]["specs"]


def test_fsdp_gradients_stay_sharded(results):
  """Parameters sharded FSDP-style: gathered for use, gradients reduce-scattered back."""
  assert "P(None, 'data')" in results["gru_fsdp"]["specs"]
