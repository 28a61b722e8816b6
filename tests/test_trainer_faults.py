"""Fault tolerance of the IMDB trainer, with real subprocesses on a tiny slice of the data.

Every scenario ends by comparing with one uninterrupted run: the parameters and optimizer
state must be bitwise equal, and the metrics equal except wall-clock times. Faults are
injected with the trainer's test-only `--inject-fault KIND:STEP` (a real SIGKILL or
SIGINT sent by the process to itself after global step STEP, or NaN weights in the batch
of step STEP), so that each one lands at a known place in the middle of an epoch.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN = REPO / "examples" / "imdb" / "train.py"
sys.path.insert(0, str(REPO / "examples" / "imdb"))
import checkpoint  # noqa: E402
import train as trainer  # noqa: E402
from test_imdb import find_data_dir  # noqa: E402

# 128 training reviews in batches of 16: 8 steps per epoch, 16 in all; dropout on, so the
# PRNG state matters; a checkpoint every 3 steps, so there are mid-epoch checkpoints;
# per-layer gradient norms logged, so their running sums must survive a resume too.
STEPS_PER_EPOCH = 8
ARGS = ["--limit-train", "160", "--limit-test", "40", "--batch-size", "16",
        "--eval-batch-size", "40", "--cell", "lstm", "--hidden", "4,4", "--embed", "8",
        "--maxlen", "20", "--vocab", "500", "--dropout", "0.1", "--ckpt-every", "3",
        "--epochs", "2", "--log-grad-norms"]
TIMES = ("seconds", "ms_per_step")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  data_dir = find_data_dir()
  cache = tmp_path_factory.mktemp("jax_cache")  # shared compilations: the runs are short
  return {**os.environ, "TFDS_DATA_DIR": data_dir, "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def train(env, out, *extra, expect=0):
  """Runs the trainer in a subprocess; checks its exit status; returns stderr."""
  proc = subprocess.run([sys.executable, str(TRAIN), *ARGS, "--out", str(out), *extra],
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
  return proc.stderr


def arrays(out):
  with np.load(out / checkpoint.FILENAME) as f:
    return {k: f[k] for k in f.files if k != "meta"}


def metrics(out):
  m = json.loads((out / "metrics.json").read_text())
  m["history"] = [{k: v for k, v in r.items() if k not in TIMES} for r in m["history"]]
  return m


def assert_same_run(out, ref):
  a, b = arrays(out), arrays(ref)
  assert a.keys() == b.keys()
  for k in a:  # parameters and optimizer state, bitwise
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{k} differs"
  ma, mb = metrics(out), metrics(ref)
  assert ma["history"] == mb["history"] and ma["test"] == mb["test"]


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
  """One uninterrupted run of 2 epochs."""
  out = tmp_path_factory.mktemp("reference")
  train(env, out)
  return out


def test_uninterrupted_run_writes_the_promised_outputs(reference):
  m = json.loads((reference / "metrics.json").read_text())
  assert {"config", "history", "test", "device"} <= m.keys()
  assert [r["epoch"] for r in m["history"]] == [1, 2]
  for r in m["history"]:
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= r.keys()
    assert list(r["grad_norms"]) == ["dense", "embed", "rnn_0", "rnn_1"]
    assert all(0 < v < float("inf") for v in r["grad_norms"].values())
  assert m["test"].keys() >= {"loss", "accuracy"} and m["config"]["hidden"] == [4, 4]
  assert (reference / "curves.png").read_bytes()[:4] == b"\x89PNG"
  meta = checkpoint.read_meta(str(reference))
  assert (meta["epoch"], meta["step"], meta["global_step"]) == (2, 0, 2 * STEPS_PER_EPOCH)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(env, reference, tmp_path):
  out = tmp_path / "run"
  train(env, out, "--inject-fault", "sigkill:13", expect=-signal.SIGKILL)
  meta = checkpoint.read_meta(str(out))
  assert (meta["global_step"], meta["epoch"], meta["step"]) == (12, 1, 4)  # mid-epoch 2
  (out / f".{checkpoint.FILENAME}.tmp-99999").write_bytes(b"torn write")  # a killed save
  train(env, out, "--resume")
  assert_same_run(out, reference)


def test_nonfinite_loss_stops_naming_the_step_and_resumes_with_smaller_lr(env, reference,
                                                                          tmp_path):
  out = tmp_path / "run"
  err = train(env, out, "--inject-fault", "nan:11", expect=trainer.EXIT_NONFINITE)
  assert "non-finite loss (nan)" in err and "at step 11 (epoch 2, batch 3/8)" in err
  assert "--resume --lr" in err and "Traceback" not in err
  meta = checkpoint.read_meta(str(out))
  assert meta["global_step"] == 9  # the last good checkpoint, not overwritten
  assert all(np.isfinite(a).all() for a in arrays(out).values())
  train(env, out, "--resume", "--lr", "5e-4")
  m = metrics(out)
  assert m["config"]["lr"] == 5e-4 and len(m["history"]) == 2
  assert m["history"][0] == metrics(reference)["history"][0]  # epoch 1 untouched
  assert all(np.isfinite(a).all() for a in arrays(out).values())


def test_sigint_saves_a_checkpoint_and_resume_continues(env, reference, tmp_path):
  out = tmp_path / "run"
  err = train(env, out, "--inject-fault", "sigint:5", expect=trainer.EXIT_INTERRUPTED)
  assert "interrupted by SIGINT at step 5" in err and "--resume" in err
  meta = checkpoint.read_meta(str(out))
  assert (meta["global_step"], meta["epoch"], meta["step"]) == (5, 0, 5)  # saved on exit
  train(env, out, "--resume")
  assert_same_run(out, reference)


def test_two_epochs_equal_one_epoch_then_resume(env, reference, tmp_path):
  out = tmp_path / "run"
  train(env, out, "--epochs", "1")
  assert len(metrics(out)["history"]) == 1
  train(env, out, "--resume", "--epochs", "2")
  assert_same_run(out, reference)


def test_corrupt_or_mismatched_checkpoint_gives_a_clear_error(reference, tmp_path, capsys):
  out = tmp_path / "run"
  shutil.copytree(reference, out)
  assert trainer.run_main(["--out", str(out), "--resume", "--hidden", "8,8"]) == 2
  err = capsys.readouterr().err
  assert "different model or data configuration" in err and "--hidden" in err
  data = (out / checkpoint.FILENAME).read_bytes()
  (out / checkpoint.FILENAME).write_bytes(data[: len(data) // 2])
  assert trainer.run_main(["--out", str(out), "--resume"]) == 2
  err = capsys.readouterr().err
  assert "is corrupt" in err and "Traceback" not in err
  assert trainer.run_main(["--out", str(tmp_path / "empty"), "--resume"]) == 2
  assert "no checkpoint to resume from" in capsys.readouterr().err
  assert trainer.run_main(["--out", str(out)]) == 2  # a fresh run would overwrite it
  assert "already holds a checkpoint; pass --resume" in capsys.readouterr().err
  assert (out / checkpoint.FILENAME).read_bytes() == data[: len(data) // 2]  # untouched
