"""Fault tolerance of the IMDB trainer, on a tiny slice of the real data.

Every scenario ends by comparing with one uninterrupted run, made as a user makes it
(`python -m examples.imdb.main`, no --out: the default runs/imdb/<date-time>): the
parameters and optimizer state must be bitwise equal, and the metrics equal except
wall-clock times. Faults are injected by tests/fault_injection.py (the trainer has no
hook): a real SIGKILL, SIGINT or SIGTERM sent by the process to itself during global step
N, NaN weights in the batch of step N, or a SIGKILL inside orbax's N-th checkpoint save,
its arrays written but the step directory not yet renamed into place. A SIGKILL needs a
process of its own; everything else, the relaunches included, runs in this process,
which saves an interpreter, imports and compilations per run. Every relaunch is the same
command line as the first run: the trainer continues from a checkpoint in --out.
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from trainer_helpers import (ARGS, REPO, STEPS_PER_EPOCH, arrays, assert_same_run,
                             find_data_dir, metrics, restore, run, run_in_process,
                             subprocess_env)
from examples.common import checkpoint
from examples.common import provenance
from examples.imdb import main
from examples.imdb import train


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  return subprocess_env(tmp_path_factory)


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
  """One uninterrupted run of 2 epochs, as a user starts it (in a directory of its own,
  without --out): (its out dir, its stdout)."""
  cwd = tmp_path_factory.mktemp("user")
  stdout, _ = run(env, *ARGS, cwd=cwd)
  where = re.search(r"^writing metrics, curves and checkpoints to (\S+)$", stdout, re.M)
  assert where, stdout
  return cwd / where[1], stdout


@pytest.fixture
def data(monkeypatch):
  """The data dir, for the in-process runs."""
  monkeypatch.setenv("TFDS_DATA_DIR", find_data_dir())


def test_a_default_run_writes_the_promised_outputs_and_says_where(reference):
  out, stdout = reference
  assert out.parent.parent.name == "runs" and out.parent.name == "imdb"
  assert datetime.datetime.strptime(out.name, "%Y%m%d-%H%M%S")  # runs/imdb/<date-time>
  assert f"metrics: {out.relative_to(out.parents[2])}/metrics.json" in stdout
  m = json.loads((out / "metrics.json").read_text())
  assert {"config", "history", "test", "device"} <= m.keys()
  assert [r["epoch"] for r in m["history"]] == [1, 2]
  for r in m["history"]:
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= r.keys()
    assert list(r["grad_norms"]) == ["dense", "embed", "rnn_0", "rnn_1"]
    assert all(0 < v < float("inf") for v in r["grad_norms"].values())
  assert m["test"].keys() >= {"loss", "accuracy"} and m["config"]["hidden"] == [4, 4]
  assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
  meta = checkpoint.read_meta(str(out))
  assert (meta["epoch"], meta["step"], meta["global_step"]) == (2, 0, 2 * STEPS_PER_EPOCH)
  # saved at steps 3, 6, 8 (epoch end), 9, 12, 15, 16: the last KEEP are kept
  assert checkpoint.steps(str(out)) == [12, 15, 16][-checkpoint.KEEP:]
  assert sorted(os.listdir(checkpoint.path(str(out)))) == ["12", "15", "16"]


def test_metrics_record_provenance(reference):
  out, _ = reference
  p = json.loads((out / "metrics.json").read_text())["provenance"]
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
  assert p["command"].startswith(str(REPO / "examples" / "imdb" / "main.py"))
  assert "--limit-train 160" in p["command"]


def test_provenance_without_git(monkeypatch, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))  # no git to be found
  p = provenance.collect(["--epochs", "1"])
  assert p["git_commit"] is None and p["git_clean"] is None
  assert p["command"].endswith("--epochs 1") and p["cpu_count"] >= 1


def test_the_trainer_carries_no_fault_hook(reference, capsys):
  """Faults come from the tests: nothing in the examples, their flags or their saved
  settings mentions them."""
  out, _ = reference
  with pytest.raises(SystemExit):
    main.parser().parse_args(["--help"])
  help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
  assert not re.search(r"\bfault|inject|DEEPRNN_TEST", help_text, re.IGNORECASE)
  assert "--limit-train N use only the first N training reviews" in help_text
  sources = [p for p in (REPO / "examples").rglob("*.py")
             if re.search(r"\bfaults\.|import faults|DEEPRNN_TEST|\binject", p.read_text())]
  assert not sources, sources
  saved = checkpoint.read_meta(str(out))["config"]
  written = json.loads((out / "metrics.json").read_text())["config"]
  assert not [k for k in {**saved, **written} if "fault" in k]


def test_sigkill_mid_epoch_then_the_same_command_continues(env, reference, tmp_path, data):
  """Killed during step 13; the killed process had loaded its compiled steps from the
  cache the uninterrupted run filled (a relaunch does not compile again)."""
  out = tmp_path / "run"
  stdout, _ = run(env, *ARGS, "--out", str(out), fault="sigkill:13", expect=-signal.SIGKILL)
  cache = env["JAX_COMPILATION_CACHE_DIR"]
  line = next(l for l in stdout.splitlines() if "compiled in" in l)
  loaded = re.search(rf"\((\d+) programs loaded from the compilation cache {cache}\)", line)
  assert loaded and int(loaded[1]) >= 2, line  # the train and eval steps at least
  meta = checkpoint.read_meta(str(out))
  assert (meta["global_step"], meta["epoch"], meta["step"]) == (12, 1, 4)  # mid-epoch 2
  assert run_in_process(*ARGS, "--out", str(out)) == 0  # the same command line continues
  assert_same_run(out, reference[0])


def unfinished(out):
  """The temporary step directories that orbax has not renamed into place."""
  return sorted(p.name for p in (out / checkpoint.DIRNAME).glob("*.orbax-checkpoint-tmp*"))


def test_sigkill_inside_a_checkpoint_save_keeps_the_previous_one(env, reference, tmp_path,
                                                                  data):
  """Killed inside the epoch-end save (the 3rd: steps 3, 6, then 8), its arrays written
  but its directory not renamed into place: the checkpoint of step 6 is the latest, intact,
  and the same command line continues from it to the uninterrupted run's end."""
  out = tmp_path / "run"
  run(env, *ARGS, "--out", str(out), fault="sigkill-in-save:3", expect=-signal.SIGKILL)
  assert unfinished(out) == ["8.orbax-checkpoint-tmp"]
  written = out / checkpoint.DIRNAME / "8.orbax-checkpoint-tmp"
  assert (written / "state" / "_METADATA").stat().st_size > 0  # killed mid-save, not before
  assert checkpoint.steps(str(out)) == [3, 6]
  state, meta = restore(out)
  assert (meta["global_step"], meta["epoch"], meta["step"]) == (6, 0, 6)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
  assert not (out / "metrics.json").exists()  # epoch 1 never finished
  assert run_in_process(*ARGS, "--out", str(out)) == 0
  assert unfinished(out) == []  # removed by the next save
  assert_same_run(out, reference[0])


def test_killed_before_its_first_checkpoint_the_same_command_starts_afresh(env, reference,
                                                                          tmp_path, data):
  """Killed inside its first save (nothing but orbax's temporary directory in --out): the
  same command line starts fresh, and ends as the uninterrupted run."""
  out = tmp_path / "run"
  run(env, *ARGS, "--out", str(out), fault="sigkill-in-save:1", expect=-signal.SIGKILL)
  assert unfinished(out) == ["3.orbax-checkpoint-tmp"] and checkpoint.latest(str(out)) is None
  assert run_in_process(*ARGS, "--out", str(out)) == 0
  assert_same_run(out, reference[0])


def test_nonfinite_loss_stops_naming_the_step_and_resumes_with_smaller_lr(reference, tmp_path,
                                                                          data, capsys):
  out = tmp_path / "run"
  assert run_in_process(*ARGS, "--out", str(out), fault="nan:11") == train.EXIT_NONFINITE
  err = capsys.readouterr().err
  assert "non-finite loss (nan)" in err and "at step 11 (epoch 2, batch 3/8)" in err
  assert "rerun the same command with --lr <smaller>" in err and "Traceback" not in err
  assert "the last good checkpoint" in err and "global step 9" in err
  meta = checkpoint.read_meta(str(out))
  assert meta["global_step"] == 9  # the last good checkpoint, not overwritten
  assert checkpoint.steps(str(out)) == [6, 8, 9]
  assert all(np.isfinite(a).all() for a in arrays(out).values())
  assert run_in_process(*ARGS, "--out", str(out), "--lr", "5e-4") == 0
  m = metrics(out)
  assert m["config"]["lr"] == 5e-4 and len(m["history"]) == 2
  assert m["history"][0] == metrics(reference[0])["history"][0]  # epoch 1 untouched
  assert all(np.isfinite(a).all() for a in arrays(out).values())


@pytest.mark.parametrize("signame, step, where, saved", [
    ("SIGINT", 5, "at step 5", (5, 0, 5)),
    # after the epoch's last batch: the epoch is ended (validated, its one checkpoint of
    # global step 8 saved) before exiting, so no step is ever saved twice
    ("SIGTERM", 8, "at the end of epoch 1", (8, 1, 0))])
def test_sigint_or_sigterm_saves_a_checkpoint_and_resume_continues(reference, tmp_path, data,
                                                                   capsys, signame, step,
                                                                   where, saved):
  out = tmp_path / "run"
  code = run_in_process(*ARGS, "--out", str(out), fault=f"{signame.lower()}:{step}")
  err = capsys.readouterr().err
  assert code == train.EXIT_INTERRUPTED, err
  assert f"interrupted by {signame} {where}" in err and "rerun the same command" in err
  meta = checkpoint.read_meta(str(out))
  assert (meta["global_step"], meta["epoch"], meta["step"]) == saved  # saved on exit
  # --resume is accepted: it only insists that there is a checkpoint; the compilation
  # cache, a property of the launch, may change
  assert run_in_process(*ARGS, "--out", str(out), "--resume", "--compile-cache", "off") == 0
  assert "(compilation cache off)" in capsys.readouterr().out
  assert_same_run(out, reference[0])


def test_one_epoch_then_two_with_a_relative_out_dir_equals_two(reference, tmp_path, data,
                                                               monkeypatch):
  """`--out runs/x` as users type it (relative to where the command runs: orbax wants
  absolute paths); a larger --epochs trains on."""
  monkeypatch.chdir(tmp_path)
  flags = [a for a in ARGS if a != "--epochs" and a != "2"]
  assert run_in_process(*flags, "--epochs", "1", "--out", "runs/x") == 0
  out = tmp_path / "runs" / "x"
  assert len(metrics(out)["history"]) == 1
  epoch_1 = arrays(out)
  assert run_in_process(*flags, "--epochs", "2", "--out", "runs/x") == 0
  assert_same_run(out, reference[0])
  # --select best: the best validation epoch's params are in the latest checkpoint
  best_epoch = checkpoint.read_meta(str(out))["best"]["epoch"]
  best = arrays(out) if best_epoch == 2 else epoch_1
  final = arrays(out)
  for k in best:
    if k.startswith("params."):
      assert np.array_equal(final["best_params." + k[len("params."):]], best[k]), k


def test_corrupt_or_mismatched_checkpoint_gives_a_clear_error(reference, tmp_path, capsys):
  out = tmp_path / "run"
  shutil.copytree(reference[0], out)
  data = ["--data-dir", find_data_dir(), "--out", str(out)]
  assert run_in_process(*data, "--hidden", "8,8") == 2
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
  assert run_in_process(*data) == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert err.startswith(f"error: the checkpoint {latest} is corrupt") and "Traceback" not in err
  assert f"delete {latest} to continue from the checkpoint before it (step 15)" in err
  assert target.read_bytes() == damaged  # left as it was
  assert checkpoint.steps(str(out)) == [12, 15, 16]
  assert run_in_process("--out", str(tmp_path / "empty"), "--resume") == 2
  assert "no checkpoint to resume from" in capsys.readouterr().err
  assert not (tmp_path / "empty").exists()


def test_fingerprints_change_with_any_flipped_bit():
  """What catches a damaged array file that orbax reads back without complaint."""
  import ml_dtypes
  rng = np.random.default_rng(0)
  values = [rng.standard_normal((3, 5)).astype(np.float32), np.int32(-7),
            rng.standard_normal(4).astype(ml_dtypes.bfloat16), np.array([True, False])]
  for x in values:
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
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      from examples.common import checkpoint
      from examples.imdb import train
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
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
