"""The IMDB example's own smoke test: `pytest examples/imdb/train_test.py`.

One jitted step of the classifier on synthetic reviews changes every parameter it
should; one tiny epoch on a slice of the real data writes what a run promises. (The
trainer's full tests, faults and relaunches included, are in tests/.)
"""

import json
import os

import jax
import numpy as np
import pytest

import deeprnn_jax as drnn
from examples.common import imdb_text
from examples.imdb import main
from examples.imdb import model


def test_one_step_changes_the_recurrent_and_dense_params():
  net = model.classifier(vocab_size=50, embed_size=8, cell="gru", hidden_sizes=(6, 6))
  params = net.init(jax.random.key(0))
  tx = drnn.optimizer(1e-2)
  rng = np.random.default_rng(0)
  batch = {"tokens": rng.integers(2, 50, (4, 7)).astype(np.int32),
           "lengths": np.array([7, 3, 5, 1], np.int32),
           "labels": np.array([1, 0, 1, 0], np.int32), "weights": np.ones(4, np.float32)}
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam: float ** int32
    step = jax.jit(drnn.make_train_step(net.loss, tx))
    new, _, metrics = step(params, tx.init(params), batch, jax.random.key(1))
  assert np.isfinite(metrics["loss"])
  for old, now in zip(jax.tree.leaves((params["rnn"], params["dense"])),
                      jax.tree.leaves((new["rnn"], new["dense"]))):
    assert not np.array_equal(old, now)


def test_a_tiny_run_writes_metrics_curves_and_a_checkpoint(tmp_path, capsys):
  data_dir = imdb_text.resolve_data_dir(None)
  if not imdb_text.is_prepared(data_dir):
    if os.environ.get("CI"):
      pytest.fail(f"CI must run this test: no prepared IMDB in {data_dir}")
    pytest.skip(f"no prepared IMDB in {data_dir} (the trainer would download it)")
  out = tmp_path / "run"
  args = ["--limit-train", "40", "--limit-test", "20", "--batch-size", "16", "--epochs", "1",
          "--hidden", "4", "--embed", "4", "--vocab", "100", "--maxlen", "10",
          "--out", str(out), "--compile-cache", "off", "--data-cache", "off"]
  with jax.numpy_dtype_promotion("standard"):
    assert main.run_main(args) == 0
  assert f"writing metrics, curves and checkpoints to {out}" in capsys.readouterr().out
  metrics = json.loads((out / "metrics.json").read_text())
  assert len(metrics["history"]) == 1 and 0 <= metrics["test"]["accuracy"] <= 1
  assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
  assert os.listdir(out / "checkpoints") == ["2"]  # 32 training reviews: 2 steps
