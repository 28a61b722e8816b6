"""The exported IMDB classifier: serialized, reloaded in a fresh process, same outputs."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import deeprnn_jax as drnn
from examples.imdb import export
from examples.imdb import input_pipeline
from examples.imdb import model
from examples.imdb import train as trainer
from trainer_helpers import find_data_dir, run_in_process

VOCAB, MAXLEN = 50, 12
# (batch, time): batch sizes 1, 3, 8; times short, exactly maxlen and past it
SHAPES = ((1, 1), (3, 7), (8, MAXLEN), (3, MAXLEN + 5), (8, 4))

# JAX and NumPy only: the file must not need this repository
CALL_IN_A_FRESH_PROCESS = """
import sys
import jax
import numpy as np
with open(sys.argv[1], "rb") as f:
  exported = jax.export.deserialize(bytearray(f.read()))
inputs = np.load(sys.argv[2])
n = len(inputs.files) // 2
outputs = {f"p{i}": np.asarray(exported.call(inputs[f"tokens{i}"], inputs[f"lengths{i}"]))
           for i in range(n)}
np.savez(sys.argv[3], **outputs)
assert not any(m.split(".")[0] in ("deeprnn_jax", "model") for m in sys.modules)
"""


@pytest.fixture(scope="module")
def trained():
  """A tiny classifier after a few Adam steps on synthetic tokens (dropout on)."""
  net = model.classifier(VOCAB, 8, "lstm", (6, 5), dropout=0.2, pooling="meanmax")
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, VOCAB, (16, MAXLEN)).astype(np.int32)
  lengths = rng.integers(1, MAXLEN + 1, 16).astype(np.int32)
  tokens[np.arange(MAXLEN)[None, :] >= lengths[:, None]] = input_pipeline.PAD
  batch = {"tokens": tokens, "lengths": lengths, "labels": (tokens[:, 0] % 2).astype(np.int32),
           "weights": np.ones(16, np.float32)}
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam: float ** int32
    tx = drnn.optimizer(1e-2)
    run = trainer.fresh_run(net, tx, seed=0)
    params, opt_state = run["state"]["params"], run["state"]["opt_state"]
    step = jax.jit(drnn.make_train_step(net.loss, tx))
    for i in range(3):
      params, opt_state, _ = step(params, opt_state, batch, jax.random.key(i))
  return net, params


def inputs_for(shapes, seed=1):
  rng = np.random.default_rng(seed)
  cases = []
  for b, t in shapes:
    tokens = rng.integers(2, VOCAB, (b, t)).astype(np.int32)
    lengths = rng.integers(0, t + 1, b).astype(np.int32)
    lengths[0] = t  # a full row in every batch
    tokens[np.arange(t)[None, :] >= lengths[:, None]] = input_pipeline.PAD
    cases.append((tokens, lengths))
  return cases


def expected(net, params, tokens, lengths):
  """What training saw: each row's last MAXLEN tokens, re-padded (input_pipeline.encode)."""
  rows = [[str(i) for i in row[:n]] for row, n in zip(tokens, lengths)]
  ids = {str(i): i for i in range(VOCAB)}
  cut, cut_lengths = input_pipeline.encode(rows, ids, min(tokens.shape[1], MAXLEN))
  return np.asarray(jax.nn.sigmoid(jax.jit(net.apply)(params, cut, cut_lengths)))


def test_export_reloads_in_a_fresh_process_with_the_same_outputs(tmp_path, trained):
  net, params = trained
  path = str(tmp_path / "classifier.jaxexport")
  exported = export.export_classifier(net, params, MAXLEN, path, vocab={"great": 2})
  assert [str(a) for a in exported.in_avals] == ["int32[b,t]", "int32[b]"]
  assert [str(a) for a in exported.out_avals] == ["float32[b]"]
  assert export.load_vocab(path) == {"great": 2}
  assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]  # the renames happened

  cases = inputs_for(SHAPES)
  want = [expected(net, params, *c) for c in cases]
  tokens, lengths = cases[1]  # in this process too, from the file
  np.testing.assert_allclose(export.load(path).call(tokens, lengths), want[1], rtol=1e-5,
                             atol=1e-6)
  np.savez(tmp_path / "inputs.npz", **{f"tokens{i}": c[0] for i, c in enumerate(cases)},
           **{f"lengths{i}": c[1] for i, c in enumerate(cases)})
  subprocess.run([sys.executable, "-c", CALL_IN_A_FRESH_PROCESS, path,
                  str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")],
                 check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
  got = np.load(tmp_path / "outputs.npz")
  for i, ((b, t), w) in enumerate(zip(SHAPES, want)):
    assert got[f"p{i}"].shape == (b,) and got[f"p{i}"].dtype == np.float32
    np.testing.assert_allclose(got[f"p{i}"], w, rtol=1e-5, atol=1e-6, err_msg=f"{b}x{t}")
  assert np.ptp(np.concatenate(want)) > 1e-3  # the outputs do depend on the input


def test_out_of_range_ids_read_as_out_of_vocabulary(trained):
  net, params = trained
  fn = jax.jit(export.inference_fn(net, params, MAXLEN))
  tokens, lengths = inputs_for(((3, 7),), seed=2)[0]
  odd = tokens.copy()
  odd[:, :2] = np.array([[-1, VOCAB], [VOCAB + 7, 3], [4, -5]], np.int32)
  oov = np.where((odd < 0) | (odd >= VOCAB), input_pipeline.OOV, odd).astype(np.int32)
  np.testing.assert_allclose(fn(odd, lengths), fn(oov, lengths), rtol=0, atol=0)


def test_trainer_exports_the_tested_params(tmp_path, capsys):
  data_dir = find_data_dir()
  out, path = tmp_path / "run", str(tmp_path / "run" / "classifier.jaxexport")
  args = ["--data-dir", data_dir, "--limit-train", "64", "--limit-test", "24",
          "--batch-size", "32", "--eval-batch-size", "32", "--hidden", "4", "--embed", "8",
          "--vocab", "300", "--maxlen", "20", "--epochs", "1", "--out", str(out),
          "--export", path, "--compile-cache", "off", "--data-cache", "off"]  # in-process
  assert run_in_process(*args) == 0
  assert f"exported the inference function to {path}" in capsys.readouterr().out
  data = input_pipeline.load(data_dir, 300, 20, 0.2, 0, 64, 24)
  assert export.load_vocab(path) == data.vocab
  probabilities = export.load(path).call(data.test.tokens, data.test.lengths)
  accuracy = float(np.mean((np.asarray(probabilities) > 0.5) == (data.test.labels == 1)))
  with open(out / "metrics.json") as f:
    assert accuracy == pytest.approx(json.load(f)["test"]["accuracy"], abs=1e-6)
