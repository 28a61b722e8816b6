"""Fault tolerance of the IMDB trainer, with real subprocesses on a tiny slice of the data.

Every scenario ends by comparing with one uninterrupted run: the parameters and optimizer
state must be bitwise equal, and the metrics equal except wall-clock times. Faults are
injected through the trainer's test hook, the environment variable DEEPRNN_TEST_FAULT=KIND:N
(examples/imdb/faults.py: a real SIGKILL or SIGINT sent by the process to itself after
global step N, NaN weights in the batch of step N, or a SIGKILL inside orbax's N-th
checkpoint save, its arrays written but the step directory not yet renamed into place),
so that each one lands at a known place. Every relaunch is the same command line as the
first run: the trainer continues from a checkpoint in --out if there is one.
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
import textwrap

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


def train(env, out, *extra, fault=None, expect=0, cwd=None):
  """Runs the trainer in a subprocess (in `cwd`, if given), with the test hook's `fault`
  ("KIND:N") if given; checks its exit status; returns stderr."""
  env = {**env, faults.VARIABLE: fault} if fault else env
  proc = subprocess.run([sys.executable, str(TRAIN), *ARGS, "--out", str(out), *extra],
                        env=env, capture_output=True, text=True, timeout=300, cwd=cwd)
  assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
  return proc.stderr


def arrays(out, step=None):
  """The arrays of the checkpoint of `step` in `out` (default: the latest), by name, read
  back as the trainer does."""
  state, _ = restore(out, step)
  return {k: np.asarray(v) for k, v in checkpoint._names(state).items()}


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
  # saved at steps 3, 6, 8 (epoch end), 9, 12, 15, 16: the last KEEP are kept
  assert checkpoint.steps(str(reference)) == [12, 15, 16][-checkpoint.KEEP:]
  assert sorted(os.listdir(checkpoint.path(str(reference)))) == ["12", "15", "16"]


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
  train(env, out)  # the same command line continues
  assert_same_run(out, reference)


def test_a_repeated_command_loads_its_steps_from_the_compilation_cache(env, reference,
                                                                       tmp_path):
  """The reference run filled the module's cache ($JAX_COMPILATION_CACHE_DIR, which
  --compile-cache auto uses): the same command loads its steps from it and trains to
  the same bits; --compile-cache off loads nothing."""
  cache = env["JAX_COMPILATION_CACHE_DIR"]
  for flags, expected in (([], f"programs loaded from the compilation cache {cache}"),
                          (["--compile-cache", "off"], "(compilation cache off)")):
    out = tmp_path / f"run{len(flags)}"
    proc = subprocess.run([sys.executable, str(TRAIN), *ARGS, "--out", str(out), *flags],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if "compiled in" in l)
    assert expected in line, line
    if not flags:  # the train and eval steps at least (the initialiser's too)
      assert int(line.split("(")[-1].split()[0]) >= 2, line
    assert_same_run(out, reference)


def test_relative_out_dir_as_users_type_it(env, reference, tmp_path):
  """`--out runs/x`, relative to where the command runs (orbax wants absolute paths)."""
  train(env, "runs/x", fault="sigkill:13", expect=-signal.SIGKILL, cwd=tmp_path)
  train(env, "runs/x", cwd=tmp_path)  # the same command line continues
  assert_same_run(tmp_path / "runs" / "x", reference)


def restore(out, step=None):
  """The checkpoint of `step` in `out` (default: the latest) read back as the trainer
  does, into freshly built state of the model its configuration describes: (state, meta)."""
  import deeprnn_jax as drnn
  cfg = checkpoint.read_meta(str(out), step)["config"]
  net = model.classifier(cfg["vocab"], cfg["embed"], cfg["cell"], tuple(cfg["hidden"]),
                         dropout=cfg["dropout"], pooling=cfg["pooling"])
  tx = drnn.optimizer(cfg["lr"], max_norm=cfg["clip"] or None)
  return checkpoint.restore(str(out), trainer.fresh_run(net, tx, cfg["seed"])["state"], step)


def unfinished(out):
  """The temporary step directories that orbax has not renamed into place."""
  return sorted(p.name for p in (out / checkpoint.DIRNAME).glob("*.orbax-checkpoint-tmp*"))


def test_sigkill_inside_a_checkpoint_save_keeps_the_previous_one(env, reference, tmp_path):
  """Killed inside the epoch-end save (the 3rd: steps 3, 6, then 8), its arrays written
  but its directory not renamed into place: the checkpoint of step 6 is the latest, intact,
  and the same command line continues from it to the uninterrupted run's end."""
  out = tmp_path / "run"
  train(env, out, fault="sigkill-in-save:3", expect=-signal.SIGKILL)
  assert unfinished(out) == ["8.orbax-checkpoint-tmp"]
  written = out / checkpoint.DIRNAME / "8.orbax-checkpoint-tmp"
  assert (written / "state" / "_METADATA").stat().st_size > 0  # killed mid-save, not before
  assert checkpoint.steps(str(out)) == [3, 6]
  state, meta = restore(out)
  assert (meta["global_step"], meta["epoch"], meta["step"]) == (6, 0, 6)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
  assert not (out / "metrics.json").exists()  # epoch 1 never finished
  train(env, out)
  assert unfinished(out) == []  # removed by the next save
  assert_same_run(out, reference)


def test_killed_before_its_first_checkpoint_the_same_command_starts_afresh(env, reference,
                                                                          tmp_path):
  """Killed inside its first save (nothing but orbax's temporary directory in --out): the
  same command line starts fresh, and ends as the uninterrupted run."""
  out = tmp_path / "run"
  train(env, out, fault="sigkill-in-save:1", expect=-signal.SIGKILL)
  assert unfinished(out) == ["3.orbax-checkpoint-tmp"] and checkpoint.latest(str(out)) is None
  train(env, out)
  assert_same_run(out, reference)


def test_nonfinite_loss_stops_naming_the_step_and_resumes_with_smaller_lr(env, reference,
                                                                          tmp_path):
  out = tmp_path / "run"
  err = train(env, out, fault="nan:11", expect=trainer.EXIT_NONFINITE)
  assert "non-finite loss (nan)" in err and "at step 11 (epoch 2, batch 3/8)" in err
  assert "rerun the same command with --lr <smaller>" in err and "Traceback" not in err
  assert "the last good checkpoint" in err and "global step 9" in err
  meta = checkpoint.read_meta(str(out))
  assert meta["global_step"] == 9  # the last good checkpoint, not overwritten
  assert checkpoint.steps(str(out)) == [6, 8, 9]
  assert all(np.isfinite(a).all() for a in arrays(out).values())
  train(env, out, "--lr", "5e-4")
  m = metrics(out)
  assert m["config"]["lr"] == 5e-4 and len(m["history"]) == 2
  assert m["history"][0] == metrics(reference)["history"][0]  # epoch 1 untouched
  assert all(np.isfinite(a).all() for a in arrays(out).values())


@pytest.mark.parametrize("signame, step, where, saved", [
    ("SIGINT", 5, "at step 5", (5, 0, 5)),
    # after the epoch's last batch: the epoch is ended (validated, its one checkpoint of
    # global step 8 saved) before exiting, so no step is ever saved twice
    ("SIGTERM", 8, "at the end of epoch 1", (8, 1, 0))])
def test_sigint_or_sigterm_saves_a_checkpoint_and_resume_continues(env, reference, tmp_path,
                                                                   signame, step, where,
                                                                   saved):
  out = tmp_path / "run"
  err = train(env, out, fault=f"{signame.lower()}:{step}", expect=trainer.EXIT_INTERRUPTED)
  assert f"interrupted by {signame} {where}" in err and "rerun the same command" in err
  meta = checkpoint.read_meta(str(out))
  assert (meta["global_step"], meta["epoch"], meta["step"]) == saved  # saved on exit
  train(env, out, "--resume")  # accepted: it only insists that there is a checkpoint
  assert_same_run(out, reference)


def test_two_epochs_equal_one_epoch_then_resume(env, reference, tmp_path):
  out = tmp_path / "run"
  train(env, out, "--epochs", "1")
  assert len(metrics(out)["history"]) == 1
  epoch_1 = arrays(out)
  train(env, out, "--epochs", "2")
  assert_same_run(out, reference)
  # --select best: the best validation epoch's params are in the latest checkpoint
  best_epoch = checkpoint.read_meta(str(out))["best"]["epoch"]
  best = arrays(out) if best_epoch == 2 else epoch_1
  final = arrays(out)
  for k in best:
    if k.startswith("params."):
      assert np.array_equal(final["best_params." + k[len("params."):]], best[k]), k



def test_corrupt_or_mismatched_checkpoint_gives_a_clear_error(reference, tmp_path, capsys):
  out = tmp_path / "run"
  shutil.copytree(reference, out)
  data = ["--data-dir", find_data_dir(), "--out", str(out)]
  assert trainer.run_main([*data, "--hidden", "8,8"]) == 2
  err = capsys.readouterr().err
  assert "different model or data configuration" in err and "--hidden" in err
  # one flipped bit in the largest array file of the latest checkpoint: read back silently
  # by orbax (no checksums), caught by the trainer's fingerprints, or by tensorstore
  latest = out / checkpoint.DIRNAME / "16"
  target = max((p for p in (latest / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
  damaged = bytearray(target.read_bytes())
  damaged[len(damaged) // 2] ^= 0x10
  target.write_bytes(damaged)
  assert trainer.run_main(data) == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert err.startswith(f"error: the checkpoint {latest} is corrupt") and "Traceback" not in err
  assert f"delete {latest} to continue from the checkpoint before it (step 15)" in err
  assert target.read_bytes() == damaged  # left as it was
  assert checkpoint.steps(str(out)) == [12, 15, 16]
  assert trainer.run_main(["--out", str(tmp_path / "empty"), "--resume"]) == 2
  assert "no checkpoint to resume from" in capsys.readouterr().err
  assert not (tmp_path / "empty").exists()


def test_fingerprints_change_with_any_flipped_bit():
  """What catches a damaged array file that orbax reads back without complaint."""
  import ml_dtypes
  rng = np.random.default_rng(0)
  arrays = [rng.standard_normal((3, 5)).astype(np.float32), np.int32(-7),
            rng.standard_normal(4).astype(ml_dtypes.bfloat16), np.array([True, False])]
  for x in arrays:
    x = np.asarray(x)
    words = x.view(f"u{x.dtype.itemsize}").reshape(-1)
    base = checkpoint.fingerprints({"x": x})["x"]
    for i in range(words.size):
      for bit in range(1 if x.dtype == bool else 8 * x.dtype.itemsize):
        flipped = words.copy()
        flipped[i] ^= np.array(1 << bit).astype(words.dtype)
        damaged = flipped.view(x.dtype).reshape(x.shape)
        assert checkpoint.fingerprints({"x": damaged})["x"] != base, (x.dtype, i, bit)


def test_checkpoints_hold_sharded_arrays_and_restore_to_the_shardings_asked_for(tmp_path):
  """On two (host) devices: an array sharded over both is saved as it is, and restored with
  the shardings of the structure it is read into (concrete arrays or abstract
  ShapeDtypeStructs), whichever they are."""
  code = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {str(TRAIN.parent)!r})
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      import checkpoint, train
      assert jax.device_count() == 2
      mesh = Mesh(np.array(jax.devices()), ("x",))
      split, whole = NamedSharding(mesh, P("x")), NamedSharding(mesh, P())
      state = {{"w": jax.device_put(jnp.arange(32.0).reshape(8, 4), split),
               "count": jax.device_put(jnp.int32(7), whole)}}
      assert train.device_copy(state)["w"].sharding == split  # best params stay sharded
      checkpoint.save({str(tmp_path)!r}, 3, state, {{"note": "two devices"}})
      like = {{"w": jax.device_put(jnp.zeros((8, 4)), whole),
              "count": jax.ShapeDtypeStruct((), jnp.int32, sharding=whole)}}
      got, meta = checkpoint.restore({str(tmp_path)!r}, like)
      assert got["w"].sharding == whole and got["count"].sharding == whole
      like = {{"w": jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=split),
              "count": jax.ShapeDtypeStruct((), jnp.int32, sharding=whole)}}
      got, meta = checkpoint.restore({str(tmp_path)!r}, like)
      assert got["w"].sharding == split and len(got["w"].addressable_shards) == 2
      assert np.array_equal(got["w"], state["w"]) and int(got["count"]) == 7
      assert meta["note"] == "two devices" and checkpoint.steps({str(tmp_path)!r}) == [3]
      print("ok")
      """)
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
