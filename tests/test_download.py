"""The trainer's first run on a fresh machine: it downloads and prepares imdb_reviews.

No network: the test writes a small aclImdb_v1.tar.gz (the real one's layout, synthetic
reviews whose words tell the classes apart), serves it on 127.0.0.1 and points the
trainer at it with --download-url. The first run is a subprocess, as a user runs it;
so is the check that reads the prepared splits back, which keeps tfds' preparing and
TensorFlow out of the pytest process; the runs that prepare nothing run in it. They need TensorFlow, a declared dependency of
the examples: nothing here skips.
"""

import functools
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading

import pytest

from trainer_helpers import REPO, run_in_process

TRAIN = ["-m", "examples.imdb.main"]
PER_CLASS = 20  # reviews per class in each labelled split
UNSUP = 4
# the smallest run that still trains: one epoch of 32 training reviews in 4 steps
ARGS = ["--epochs", "1", "--limit-train", "40", "--limit-test", "40", "--batch-size", "8",
        "--eval-batch-size", "40", "--hidden", "4", "--embed", "4", "--vocab", "40",
        "--maxlen", "12"]


def review(label, i):
  """A review whose words give its class away; `i` keeps every text distinct."""
  words = ("great", "wonderful", "loved") if label == "pos" else ("awful", "boring", "hated")
  return f"Review {i}: a {words[i % 3]} film.<br /><br />Truly {words[(i + 1) % 3]}, {i}/10."


def write_archive(path):
  """aclImdb_v1.tar.gz as the imdb_reviews builder parses it: aclImdb/{train,test}/{pos,neg}
  and aclImdb/train/unsup, one review per file named ID_RATING.txt."""
  files = {}
  for split in ("train", "test"):
    for label, rating in (("pos", 9), ("neg", 2)):
      for i in range(PER_CLASS):
        files[f"aclImdb/{split}/{label}/{i}_{rating}.txt"] = review(label, i)
  for i in range(UNSUP):
    files[f"aclImdb/train/unsup/{i}_0.txt"] = f"Unlabelled review {i}."
  with tarfile.open(path, "w:gz") as tar:
    for name, text in files.items():
      data = text.encode()
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


class _Handler(http.server.SimpleHTTPRequestHandler):
  requests = []  # the paths asked for, by any instance

  def do_HEAD(self):
    self.requests.append(("HEAD", self.path))
    super().do_HEAD()

  def do_GET(self):
    self.requests.append(("GET", self.path))
    super().do_GET()

  def log_message(self, *args):  # no access log on the test's stderr
    pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
  """An HTTP server on 127.0.0.1 serving aclImdb_v1.tar.gz: (its URL, the requests seen)."""
  root = tmp_path_factory.mktemp("mirror")
  write_archive(root / "aclImdb_v1.tar.gz")
  httpd = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}/aclImdb_v1.tar.gz", _Handler.requests
  httpd.shutdown()
  httpd.server_close()


def closed_port():
  """A port on 127.0.0.1 nothing listens on (bound by the OS, then released)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """The environment of the subprocesses: no data dir or fault hook the suite set; one
  compilation cache, so that the second training run skips compiling."""
  environ = {k: v for k, v in os.environ.items()
             if k not in ("TFDS_DATA_DIR", "DEEPRNN_TEST_FAULT")}
  return {**environ, "PYTHONPATH": str(REPO), "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def run(env, args, timeout=120):
  """Runs `args` with this Python in `env`, from the repository root."""
  return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                        timeout=timeout, cwd=REPO)


# Reads every split back as the trainer does (tfds.data_source), and reports whether that
# imported TensorFlow: reading prepared data must not (it costs seconds per process).
READ_BACK = textwrap.dedent("""
    import json, sys
    import tensorflow_datasets as tfds
    splits = {}
    for split in ("train", "test", "unsupervised"):
      source = tfds.data_source("imdb_reviews", split=split, data_dir=sys.argv[1])
      splits[split] = [[r["text"].decode(), int(r["label"])]
                       for r in source.__getitems__(list(range(len(source))))]
    print(json.dumps({"splits": splits, "tensorflow": "tensorflow" in sys.modules}))
""")


def test_first_run_downloads_prepares_and_trains(server, env, tmp_path, capsys):
  url, requests = server
  data_dir, out = tmp_path / "tfds", tmp_path / "run"
  proc = run(env, [*TRAIN, "--data-dir", str(data_dir), "--download-url", url,
              "--out", str(out), *ARGS])
  assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
  assert f"Downloading imdb_reviews from {url} and preparing it in {data_dir}" in proc.stdout
  assert ("GET", "/aclImdb_v1.tar.gz") in requests
  metrics = json.loads((out / "metrics.json").read_text())
  assert len(metrics["history"]) == 1 and "test" in json.dumps(metrics)

  version = data_dir / "imdb_reviews" / "plain_text" / "1.0.0"
  assert (version / "dataset_info.json").is_file()
  for split in ("train", "test", "unsupervised"):
    assert list(version.glob(f"imdb_reviews-{split}.array_record-*")), split
  assert not list(version.glob("*.tfrecord*"))
  read = run(env, ["-c", READ_BACK, str(data_dir)], timeout=60)
  assert read.returncode == 0, read.stderr
  result = json.loads(read.stdout.splitlines()[-1])
  assert result["tensorflow"] is False, "reading prepared data imported TensorFlow"
  splits = result["splits"]
  for split in ("train", "test"):
    labels = [label for _, label in splits[split]]
    assert sorted(labels) == [0] * PER_CLASS + [1] * PER_CLASS, split
    for text, label in splits[split]:  # 1 = pos, as the builder's ClassLabel(neg, pos)
      assert (text in {review("pos", i) for i in range(PER_CLASS)}) == (label == 1), text
  assert sorted(splits["unsupervised"]) == sorted(
      [f"Unlabelled review {i}.", -1] for i in range(UNSUP))

  # the second run (in this process: it prepares nothing) finds the prepared copy and
  # asks nothing of the server; the same --out continues the run
  before = len(requests)
  assert run_in_process("--data-dir", str(data_dir), "--download-url", url,
                        "--out", str(out), "--epochs", "2", *ARGS[2:]) == 0
  stdout = capsys.readouterr().out
  assert "Downloading" not in stdout and len(requests) == before
  assert "from epoch 2, global step 4" in stdout


def test_unreachable_url_is_a_clear_error(tmp_path, capsys, monkeypatch):
  data_dir = tmp_path / "tfds"
  monkeypatch.chdir(tmp_path)  # where the default runs/imdb/<date-time> would go
  url = f"http://127.0.0.1:{closed_port()}/aclImdb_v1.tar.gz"
  assert run_in_process("--data-dir", str(data_dir), "--download-url", url, *ARGS) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: could not reach ") and "Traceback" not in err
  for fragment in (url, "Connection refused", "--data-dir", "TFDS_DATA_DIR",
                   f"Looked in: {data_dir}"):
    assert fragment in err, fragment
  assert list(tmp_path.iterdir()) == []  # failed before writing anything


def test_no_download_on_an_empty_dir_is_the_missing_data_error(server, tmp_path, capsys,
                                                               monkeypatch):
  url, requests = server
  data_dir = tmp_path / "tfds"
  data_dir.mkdir()
  monkeypatch.chdir(tmp_path)
  before = len(requests)
  assert run_in_process("--data-dir", str(data_dir), "--download-url", url,
                        "--no-download", *ARGS) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: no prepared imdb_reviews ")
  assert "Traceback" not in err and f"Looked in: {data_dir}" in err
  assert len(requests) == before and not list(data_dir.iterdir())
  assert [p.name for p in tmp_path.iterdir()] == ["tfds"]
