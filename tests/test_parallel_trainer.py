"""The IMDB trainer past one device: a data-parallel mesh and two processes on 127.0.0.1.

Every run trains the same tiny model on the same slice of the real data, with the same
global batches. On 2 devices (`--mesh data=2`, virtual CPU devices) and as 2 processes
joined by jax.distributed (`--coordinator 127.0.0.1:PORT`, JAX's CPU collectives) it must
end where one device does, up to float32 rounding: the gradients are summed in another
order. A 2-process run whose process 1 is SIGKILLed mid-epoch (then process 0 too, as a
scheduler tears the job down) and relaunched must end bitwise where an uninterrupted
2-process run does; a checkpoint written on 2 devices must continue on 1. The runs on
several devices or processes are subprocesses (a process's device count is fixed when
JAX starts); the one-device runs run in this process.
"""

import os
import shutil
import socket

import numpy as np
import pytest

from trainer_helpers import (ARGS, arrays, find_data_dir, finish, launch, metrics,
                             run_in_process, subprocess_env)

TOL = dict(rtol=1e-5, atol=1e-6)


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  return subprocess_env(tmp_path_factory)


def processes(env, out, fault=None):
  """Both processes of a 2-process run (process 1 gets `fault`)."""
  flags = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
  return [launch(env, *ARGS, "--out", str(out), *flags, "--process-id", str(i),
                 fault=fault if i else None) for i in range(2)]


def assert_close_runs(out, ref):
  a, b = arrays(out), arrays(ref)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], err_msg=k, **TOL)
  ma, mb = metrics(out), metrics(ref)
  for ra, rb in zip(ma["history"] + [ma["test"]], mb["history"] + [mb["test"]]):
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
      if k in ra:
        np.testing.assert_allclose(ra[k], rb[k], err_msg=k, **TOL)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
  out = tmp_path_factory.mktemp("one_device")
  with pytest.MonkeyPatch.context() as m:
    m.setenv("TFDS_DATA_DIR", find_data_dir())
    assert run_in_process(*ARGS, "--out", str(out)) == 0
  return out


@pytest.fixture(scope="module")
def two_processes(env, tmp_path_factory):
  out = tmp_path_factory.mktemp("two_processes")
  logs = [finish(p)[0] for p in processes(env, out)]
  return out, logs


def test_data_parallel_mesh_equals_one_device(env, one_device, tmp_path, monkeypatch,
                                              capsys):
  out = tmp_path / "mesh"
  log, _ = finish(launch(env, *ARGS, "--out", str(out), "--mesh", "data=2"))
  assert "batches split over 2 (1 process(es))" in log
  assert_close_runs(out, one_device)
  # a checkpoint written on 2 devices (the oldest kept: step 12 of 16) continues on 1
  for step in sorted(int(s) for s in os.listdir(out / "checkpoints"))[1:]:
    shutil.rmtree(out / "checkpoints" / str(step))
  monkeypatch.setenv("TFDS_DATA_DIR", env["TFDS_DATA_DIR"])
  capsys.readouterr()
  assert run_in_process(*ARGS, "--out", str(out)) == 0
  log = capsys.readouterr().out
  assert "1 device(s)" in log and "from epoch 2, global step 12" in log
  assert_close_runs(out, one_device)


def test_two_processes_equal_one_device(two_processes, one_device):
  out, logs = two_processes
  assert all("batches split over 2 (2 process(es))" in log for log in logs)
  assert sum("writing metrics, curves and checkpoints to" in log for log in logs) == 1
  assert_close_runs(out, one_device)


def test_a_killed_process_and_a_relaunch_end_as_an_uninterrupted_run(env, two_processes,
                                                                       tmp_path):
  out = tmp_path / "killed"
  first = processes(env, out, fault="sigkill:11")  # process 1 dies during step 11 of 16
  first[1].wait(timeout=300)
  assert first[1].returncode == -9
  first[0].kill()  # the job is torn down, as a scheduler would
  first[0].wait(timeout=60)
  # checkpoints every 3 steps and at epoch ends: the relaunch continues from step 9
  logs = [finish(p)[0] for p in processes(env, out)]
  assert all("from epoch 2, global step 9" in log for log in logs)
  a, b = arrays(out), arrays(two_processes[0])
  for k in a:
    assert np.array_equal(a[k], b[k]), f"{k} differs"
  assert metrics(out)["history"] == metrics(two_processes[0])["history"]
  assert metrics(out)["test"] == metrics(two_processes[0])["test"]
