"""The language-model example's own smoke test: `pytest examples/lm/train_test.py`.

The model's loss is about log(vocab) untrained and falls over a few truncated-BPTT
updates on synthetic text; one tiny epoch on a slice of the real data writes what a run
promises. (The example's full tests are tests/test_lm.py.)
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from examples.common import imdb_text
from examples.lm import main
from examples.lm import model


def test_truncated_bptt_lowers_the_loss_on_a_repeating_text():
  lm = model.language_model(vocab_size=20, embed_size=8, hidden_sizes=(16, 16))
  params = lm.init(jax.random.key(0))
  text = jnp.tile(jnp.arange(20, dtype=jnp.int32), 9)[None].repeat(2, axis=0)  # [2, 180]
  tx = drnn.optimizer(1e-1, max_norm=1.0)
  lengths = jnp.full((2,), 179, jnp.int32)
  (total, count), _ = lm.nll(params, lm.initial_state(2), text[:, :-1], text[:, 1:], lengths)
  untrained = float(total / count)
  assert abs(untrained - math.log(20)) < 0.2  # about uniform over the 20 words
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam: float ** int32
    train = jax.jit(lambda p, o: drnn.tbptt_train(lm.train_loss, tx, p, o,
                                                  lm.initial_state(2), text[:, :-1],
                                                  text[:, 1:], 20, key=jax.random.key(1)))
    opt_state = tx.init(params)
    for _ in range(4):  # 9 chunks of 20 steps each, one update per chunk
      params, opt_state, _, chunk_losses = train(params, opt_state)
  assert float(np.mean(chunk_losses)) < 0.5 * untrained


def test_a_tiny_run_writes_metrics_curves_and_a_checkpoint(tmp_path, capsys):
  data_dir = imdb_text.resolve_data_dir(None)
  if not imdb_text.is_prepared(data_dir):
    if os.environ.get("CI"):
      pytest.fail(f"CI must run this test: no prepared IMDB in {data_dir}")
    pytest.skip(f"no prepared IMDB in {data_dir}")
  out = tmp_path / "run"
  args = ["--limit-train-tokens", "2000", "--val-reviews", "4", "--test-reviews", "4",
          "--vocab", "100", "--embed", "8", "--hidden", "8", "--bptt", "10",
          "--batch-size", "4", "--eval-batch-size", "2", "--epochs", "1",
          "--out", str(out), "--compile-cache", "off"]
  with jax.numpy_dtype_promotion("standard"):
    assert main.run_main(args) == 0
  assert f"writing metrics, curves and checkpoints to {out}" in capsys.readouterr().out
  metrics = json.loads((out / "metrics.json").read_text())
  assert len(metrics["history"]) == 1 and metrics["test"]["perplexity"] > 1
  assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
  assert len(os.listdir(out / "checkpoints")) == 1
