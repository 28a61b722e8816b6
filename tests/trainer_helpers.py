"""Running the IMDB trainer from the tests: in-process (cheap: no interpreter, imports or
compilation to repeat) or as a subprocess, as a user runs it (where a test needs a fresh
process: a real SIGKILL, several devices, several processes); and reading back what a
run left in its --out."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
FAULTS = REPO / "tests" / "fault_injection.py"
COMMAND = [sys.executable, "-m", "examples.imdb.main"]

# 160 training reviews (128 after the validation split) in batches of 16: 8 steps per
# epoch, 16 in all; dropout on, so the PRNG state matters; a checkpoint every 3 steps, so
# there are mid-epoch checkpoints; per-layer gradient norms logged, so their running sums
# must survive a resume too.
STEPS_PER_EPOCH = 8
ARGS = ["--limit-train", "160", "--limit-test", "40", "--batch-size", "16",
        "--eval-batch-size", "40", "--cell", "lstm", "--hidden", "4,4", "--embed", "8",
        "--maxlen", "20", "--vocab", "500", "--dropout", "0.1", "--ckpt-every", "3",
        "--epochs", "2", "--log-grad-norms"]
TIMES = ("seconds", "ms_per_step")


def find_data_dir():
  """The IMDB data dir ($TFDS_DATA_DIR, else ../shared/tensorflow_datasets), or skip (fail
  under CI) when it is absent."""
  from examples.common import imdb_text
  path = os.environ.get("TFDS_DATA_DIR") or str(imdb_text.SHARED)
  try:
    imdb_text.check_data_dir(path)
  except imdb_text.DataError as e:
    if os.environ.get("CI"):
      pytest.fail(f"CI must run the IMDB tests: {e}")
    pytest.skip(f"IMDB data not found: {e}")
  return path


def subprocess_env(tmp_path_factory):
  """The environment of trainer subprocesses: the data, one compilation cache, output
  unbuffered (a killed process keeps its lines), the checkout importable from any cwd."""
  cache = tmp_path_factory.mktemp("jax_cache")
  return {**os.environ, "TFDS_DATA_DIR": find_data_dir(), "PYTHONPATH": str(REPO),
          "PYTHONUNBUFFERED": "1", "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def launch(env, *args, fault=None, cwd=None):
  """The trainer as a started subprocess, with `fault` ("KIND:N") injected if given."""
  command = [sys.executable, str(FAULTS), fault] if fault else COMMAND
  return subprocess.Popen([*command, *args], env=env, cwd=cwd or REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc, expect=0, timeout=300):
  """Waits for a launched trainer; checks its exit status; (stdout, stderr)."""
  stdout, stderr = proc.communicate(timeout=timeout)
  assert proc.returncode == expect, f"exit {proc.returncode}\n{stdout}\n{stderr[-3000:]}"
  return stdout, stderr


def run(env, *args, fault=None, expect=0, cwd=None):
  """Runs the trainer in a subprocess to its end: (stdout, stderr)."""
  return finish(launch(env, *args, fault=fault, cwd=cwd), expect)


def run_in_process(*args, fault=None):
  """`python -m examples.imdb.main ARGS` in this process (with `fault` injected): its exit
  status. optax's Adam computes float ** int32, which the suite's strict promotion
  rejects: the trainer runs under JAX's standard promotion, as it does for users."""
  import fault_injection
  from examples.imdb import main
  with jax.numpy_dtype_promotion("standard"):
    if fault is None:
      return main.run_main(list(args))
    with fault_injection.injected(fault):
      return main.run_main(list(args))


def restore(out, step=None):
  """The checkpoint of `step` in `out` (default: the latest) read back as the trainer
  does, into freshly built state of the model its configuration describes: (state, meta)."""
  import deeprnn_jax as drnn
  from examples.common import checkpoint
  from examples.imdb import model
  from examples.imdb import train
  cfg = checkpoint.read_meta(str(out), step)["config"]
  net = model.classifier(cfg["vocab"], cfg["embed"], cfg["cell"], tuple(cfg["hidden"]),
                         dropout=cfg["dropout"], pooling=cfg["pooling"])
  tx = drnn.optimizer(cfg["lr"], max_norm=cfg["clip"] or None)
  return checkpoint.restore(str(out), train.fresh_run(net, tx, cfg["seed"])["state"], step)


def arrays(out, step=None):
  """The arrays of the checkpoint of `step` in `out` (default: the latest), by name."""
  from examples.common import checkpoint
  state, _ = restore(out, step)
  return {k: np.asarray(v) for k, v in checkpoint._names(state).items()}


def metrics(out):
  """metrics.json of the run in `out`, its wall-clock times left out."""
  m = json.loads((pathlib.Path(out) / "metrics.json").read_text())
  m["history"] = [{k: v for k, v in r.items() if k not in TIMES} for r in m["history"]]
  return m


def assert_same_run(out, ref):
  """Parameters and optimizer state bitwise equal; metrics equal but for the clocks."""
  a, b = arrays(out), arrays(ref)
  assert a.keys() == b.keys()
  for k in a:
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{k} differs"
  ma, mb = metrics(out), metrics(ref)
  assert ma["history"] == mb["history"] and ma["test"] == mb["test"]
