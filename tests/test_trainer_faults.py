"""Fault tolerance of the IMDB trainer, with real subprocesses on a tiny slice of the data.

Every scenario ends by comparing with one uninterrupted run: the parameters and optimizer
state must be bitwise equal, and the metrics equal except wall-clock times. Faults are
injected through the trainer's test hook, the environment variable DEEPRNN_TEST_FAULT=KIND:N
(examples/imdb/faults.py: a real SIGKILL or SIGINT sent by the process to itself after
global step N, NaN weights in the batch of step N, or a SIGKILL halfway through writing
the N-th checkpoint), so that each one lands at a known place.
"""

import datetime
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN = REPO / "examples" / "imdb" / "train.py"
sys.path.insert(0, str(REPO / "examples" / "imdb"))
import checkpoint  # noqa: E402
import config  # noqa: E402
import faults  # noqa: E402
import model  # noqa: E402
import provenance  # noqa: E402
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
  environ = {k: v for k, v in os.environ.items() if k != faults.VARIABLE}  # none leaks in
  return {**environ, "TFDS_DATA_DIR": data_dir, "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def train(env, out, *extra, fault=None, expect=0):
  """Runs the trainer in a subprocess, with the test hook's `fault` ("KIND:N") if given;
  checks its exit status; returns stderr."""
  env = {**env, faults.VARIABLE: fault} if fault else env
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


def test_metrics_record_provenance(reference):
  p = json.loads((reference / "metrics.json").read_text())["provenance"]
  when = datetime.datetime.fromisoformat(p["utc"])
  assert when.utcoffset() == datetime.timedelta(0)
  assert abs(datetime.datetime.now(datetime.timezone.utc) - when) < datetime.timedelta(hours=1)
  assert isinstance(p["cpu"], str) and p["cpu"].strip()
  assert p["cpu_count"] >= 1 and 1 <= p["cpus_usable"] <= p["cpu_count"]
  assert (p["jax"], p["jaxlib"]) == (jax.__version__, jax.lib.__version__)
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                        text=True) if shutil.which("git") else None
  if head and head.returncode == 0:
    assert p["git_commit"] == head.stdout.strip() and isinstance(p["git_clean"], bool)
  else:  # not a git checkout, or no git: unknown rather than a crash
    assert p["git_commit"] is None and p["git_clean"] is None
  assert p["command"].startswith(str(TRAIN)) and "--limit-train 160" in p["command"]


def test_provenance_without_git(monkeypatch, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))  # no git to be found
  p = provenance.collect(["--epochs", "1"])
  assert p["git_commit"] is None and p["git_clean"] is None
  assert p["command"].endswith("--epochs 1") and p["cpu_count"] >= 1


def test_fault_hook_is_a_variable_not_a_flag_nor_a_setting(reference, capsys):
  with pytest.raises(SystemExit):
    config.parser().parse_args(["--help"])
  help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
  assert not re.search(r"\bfault|inject|DEEPRNN_TEST", help_text, re.IGNORECASE)
  assert "--limit-train N use only the first N training reviews" in help_text
  assert "--limit-test N evaluate on only the first N test reviews" in help_text
  saved = checkpoint.read_meta(str(reference))["config"]
  written = json.loads((reference / "metrics.json").read_text())["config"]
  assert not [k for k in {**saved, **written} if "fault" in k]
  for bad in ("boom:3", "sigkill", "sigkill:0", "nan:-1", "sigkill-in-save:x"):
    with pytest.raises(faults.FaultError) as info:
      faults.parse(bad)
    assert f"${faults.VARIABLE}" in str(info.value) and "expected KIND:N" in str(info.value)
    assert f"got {bad!r}" in str(info.value)
  assert faults.parse("") is None and faults.parse("sigkill-in-save:2") == ("sigkill-in-save", 2)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(env, reference, tmp_path):
  out = tmp_path / "run"
  train(env, out, fault="sigkill:13", expect=-signal.SIGKILL)
  meta = checkpoint.read_meta(str(out))
  assert (meta["global_step"], meta["epoch"], meta["step"]) == (12, 1, 4)  # mid-epoch 2
  train(env, out, "--resume")
  assert_same_run(out, reference)


def restore(out):
  """The checkpoint in `out` read back as the trainer does, into freshly built state of
  the model its configuration describes: (state, meta)."""
  import deeprnn_jax as drnn
  cfg = checkpoint.read_meta(str(out))["config"]
  net = model.classifier(cfg["vocab"], cfg["embed"], cfg["cell"], tuple(cfg["hidden"]),
                         dropout=cfg["dropout"], pooling=cfg["pooling"])
  tx = drnn.optimizer(cfg["lr"], max_norm=cfg["clip"] or None)
  return checkpoint.restore(str(out), trainer.fresh_run(net, tx, cfg["seed"])["state"])


def test_sigkill_inside_a_checkpoint_save_keeps_the_previous_one(env, reference, tmp_path):
  """Killed halfway through writing the epoch-end checkpoint (the 3rd save: steps 3, 6,
  then 8): the temporary file is torn, the checkpoint of step 6 is intact, and resuming
  from it ends as the uninterrupted run."""
  out = tmp_path / "run"
  train(env, out, fault="sigkill-in-save:3", expect=-signal.SIGKILL)
  torn = list(out.glob(f".{checkpoint.FILENAME}.tmp-*"))
  assert len(torn) == 1 and torn[0].stat().st_size > 0
  (tmp_path / "torn").mkdir()
  shutil.copy(torn[0], tmp_path / "torn" / checkpoint.FILENAME)
  with pytest.raises(checkpoint.CheckpointError, match="is corrupt"):
    checkpoint.read_meta(str(tmp_path / "torn"))  # a torn file would be caught, not used
  state, meta = restore(out)
  assert (meta["global_step"], meta["epoch"], meta["step"]) == (6, 0, 6)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
  assert not (out / "metrics.json").exists()  # epoch 1 never finished
  train(env, out, "--resume")
  assert_same_run(out, reference)


def test_nonfinite_loss_stops_naming_the_step_and_resumes_with_smaller_lr(env, reference,
                                                                          tmp_path):
  out = tmp_path / "run"
  err = train(env, out, fault="nan:11", expect=trainer.EXIT_NONFINITE)
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
  err = train(env, out, fault="sigint:5", expect=trainer.EXIT_INTERRUPTED)
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
