"""The IMDB language model (examples/lm) on slices of the real data: continuous batches,
vocabulary, the state carried across chunks, perplexity, tied embeddings, a short
training run with a relaunch, the PyTorch peer (studies/lm_torch.py) and the study's
width rule (studies/lm.py).

The data comes from $TFDS_DATA_DIR (CI sets it to ../shared/tensorflow_datasets), else
../shared/tensorflow_datasets next to the repository. Without it these tests skip, except
under CI (the CI variable set), where they fail: CI must run them.
"""

import json
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deeprnn_jax as drnn
from examples.common import imdb_text
from examples.lm import input_pipeline
from examples.lm import main
from examples.lm import model
from examples.lm import report
from examples.lm import train
from studies import lm as study
from trainer_helpers import find_data_dir

lm = types.SimpleNamespace(input_pipeline=input_pipeline, model=model, report=report,
                           study=study, train=train, main=main)


@pytest.fixture(scope="module")
def data_dir():
  return find_data_dir()


@pytest.fixture(scope="module")
def corpus(data_dir):
  return lm.input_pipeline.load(data_dir, 300, limit_train_tokens=3000, val_reviews=8,
                                test_reviews=8)


def test_vocabulary_and_streams_match_a_python_reference(data_dir, corpus):
  imdb = imdb_text
  assert lm.input_pipeline.tokenize is imdb.tokenize  # tested in test_imdb.py
  tokens = imdb.tokenize(imdb.load_split(data_dir, "unsupervised", 40)[0])
  ends = np.cumsum([len(t) + 1 for t in tokens])
  used = tokens[:int(np.searchsorted(ends, 3000)) + 1]  # the reviews holding 3000 tokens
  counts = {}
  for w in (w for t in used for w in t):
    counts[w] = counts.get(w, 0) + 1
  vocab = corpus.vocab
  assert len(vocab) == 300 and vocab["<eos>"] == 0 and vocab["<unk>"] == 1
  assert sorted(vocab.values()) == list(range(300)) and corpus.words[2] == "the"
  by_id = [counts[w] for w in corpus.words[2:]]  # most frequent first
  assert by_id == sorted(by_id, reverse=True) and by_id[-1] >= sorted(counts.values())[-298]
  stream = [vocab.get(w, 1) for t in used for w in t + ["<eos>"]][:3000]
  assert corpus.train.tolist() == stream and corpus.train.dtype == np.int32
  assert (corpus.train == 0).sum() == (ends <= 3000).sum()  # one <eos> per review
  held_out = lm.input_pipeline.tokenize(imdb.load_split(data_dir, "test", 16)[0])
  for part, texts_ in ((corpus.val, held_out[:8]), (corpus.test, held_out[8:])):
    assert part.tolist() == [vocab.get(w, 1) for t in texts_ for w in t + ["<eos>"]]


def test_batchify_and_chunks_continue_each_stream(corpus):
  pipeline = lm.input_pipeline
  data = pipeline.batchify(corpus.train, 4)
  assert data.shape == (4, 750) and data.dtype == np.int32
  for b in range(4):  # row b is the b-th contiguous piece of the text
    assert np.array_equal(data[b], corpus.train[b * 750:(b + 1) * 750])
  chunks = [pipeline.chunk(data, s, 40) for s in range(0, 749, 40)]
  assert [c["length"] for c in chunks] == [40] * 18 + [29]
  for prev, nxt in zip(chunks, chunks[1:]):  # each row goes on where it stopped
    assert np.array_equal(nxt["inputs"][:, 0], prev["targets"][:, -1])
  inputs = np.concatenate([c["inputs"][:, :c["length"]] for c in chunks], axis=1)
  targets = np.concatenate([c["targets"][:, :c["length"]] for c in chunks], axis=1)
  assert np.array_equal(inputs, data[:, :-1]) and np.array_equal(targets, data[:, 1:])
  assert not chunks[-1]["inputs"][:, 29:].any()  # padding past the end
  assert pipeline.segments(749, 40, 5) == [(0, 200), (200, 400), (400, 600), (600, 749)]
  with pytest.raises(pipeline.TextTooShort, match="7 tokens cannot fill 4 streams"):
    pipeline.batchify(corpus.train[:7], 4, "text")


def random_params(net, scale=0.1):
  """Params of `net`'s structure, every leaf (biases too) uniform in [-scale, scale]: from
  NumPy, so that no test pays for compiling `init`."""
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(rng.uniform(-scale, scale, s.shape), s.dtype),
                      jax.eval_shape(net.init, jax.random.key(0)))


@pytest.fixture(scope="module")
def small():
  """A small model, its params and its jitted nll (compiled once for the tests below)."""
  net = lm.model.language_model(300, 12, (10, 8))
  return net, random_params(net), jax.jit(net.nll)


def numpy_logits(net, params, tokens):
  """The model in float64 NumPy from the documented equations: embedding, LSTM layers
  ([i, f, g, o] = x @ w_ih + h @ w_hh + b; c = s(f) c + s(i) tanh(g); h = s(o) tanh(c)),
  output layer. tokens [B, T] -> logits [B, T, V]."""
  f64 = lambda a: np.asarray(a, np.float64)
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  xs = f64(params["embed"])[tokens]  # [B, T, E]
  for l in range(len(net.rnn.hidden_sizes)):
    p = {k: f64(v) for k, v in drnn.layer_params(net.rnn, params["rnn"], l).items()}
    h = c = np.zeros((xs.shape[0], p["w_hh"].shape[0]))
    ys = []
    for t in range(xs.shape[1]):
      i, f, g, o = np.split(xs[:, t] @ p["w_ih"] + h @ p["w_hh"] + p["b"], 4, axis=-1)
      c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
      h = sigmoid(o) * np.tanh(c)
      ys.append(h)
    xs = np.stack(ys, axis=1)  # [B, T, H]
  return xs @ f64(params["out"]["w"]) + f64(params["out"]["b"])


def numpy_nll(logits, targets):
  """Per-token negative log-likelihood from float64 logits [..., V]."""
  z = logits - logits.max(-1, keepdims=True)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -np.take_along_axis(log_p, np.asarray(targets)[..., None], -1)[..., 0]


def test_state_carried_across_chunks_equals_one_pass(corpus, small):
  """Chunk after chunk with the state carried gives the numbers of one pass over the
  whole sequence: in evaluation (nll) and in truncated-BPTT training (zero updates)."""
  net, params, nll = small
  data = lm.input_pipeline.batchify(corpus.train, 3)[:, :2 * 10 + 4]  # [3, 24]
  xs, ys = data[:, :-1], data[:, 1:]  # 23 steps: chunks of 10, 10 and 3
  want = numpy_nll(numpy_logits(net, params, xs), ys)  # [3, 23], one pass
  state = net.initial_state(3)
  for start in (0, 10, 20):
    c = lm.input_pipeline.chunk(data, start, 10)
    (total, count), state = nll(params, state, c["inputs"], c["targets"],
                                jnp.full((3,), c["length"], jnp.int32))
    assert int(count) == 3 * c["length"]
    np.testing.assert_allclose(float(total), want[:, start:start + 10].sum(), rtol=1e-5)
  tx = optax.set_to_zero()  # updates of zero: every chunk sees the same params
  _, _, _, losses = jax.jit(lambda p, s: drnn.tbptt_train(
      net.train_loss, tx, p, tx.init(p), s, jnp.asarray(xs), jnp.asarray(ys), 10,
      key=jax.random.key(1)))(params, net.initial_state(3))
  np.testing.assert_allclose(np.asarray(losses), [want[:, :10].mean(), want[:, 10:20].mean(),
                                                  want[:, 20:].mean()], rtol=1e-5)


def test_perplexity_is_exp_of_the_mean_nll(corpus, small):
  net, params, nll = small
  cfg = {"eval_batch_size": 3, "bptt": 10}
  got = lm.train.evaluate(nll, net, params, corpus.val, cfg, "validation")
  data = lm.input_pipeline.batchify(corpus.val, 3)
  mean = numpy_nll(numpy_logits(net, params, data[:, :-1]), data[:, 1:]).mean()
  assert got["tokens"] == data[:, 1:].size
  np.testing.assert_allclose(got["loss"], mean, rtol=1e-5)
  np.testing.assert_allclose(got["perplexity"], np.exp(mean), rtol=1e-5)
  assert 200 < got["perplexity"] < 400  # untrained: about the vocabulary size, 300


def test_tied_embeddings_share_the_matrix_and_need_matching_widths(capsys):
  net = lm.model.language_model(300, 8, (10, 8), tie=True)
  params = random_params(net)
  assert "w" not in params["out"] and params["embed"].shape == (300, 8)
  ys = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
  embed, bias = np.asarray(params["embed"]), np.asarray(params["out"]["b"])
  np.testing.assert_allclose(jax.jit(net.head)(params, ys), ys @ embed.T + bias, rtol=1e-5,
                             atol=1e-6)
  with pytest.raises(ValueError, match=r"tie: .*hidden_sizes\[-1\] == embed_size == 12, got "
                                       r"hidden_sizes \(10, 8\)"):
    lm.model.language_model(300, 12, (10, 8), tie=True)
  with pytest.raises(SystemExit):
    lm.main.parse(["--tie", "--hidden", "32,16", "--embed", "32"])
  assert "--tie" in capsys.readouterr().err


def test_layers_flag_repeats_one_width_and_bad_combinations_are_refused(capsys):
  parse = lambda *argv: lm.main.parse(list(argv))[1]
  assert parse("--layers", "3", "--hidden", "64")["hidden"] == (64, 64, 64)
  assert parse("--layers", "3")["hidden"] == (200, 200, 200)
  assert parse("--hidden", "30,20")["hidden"] == (30, 20)
  for argv, message in ((("--layers", "2", "--hidden", "8,9,10"), "expected one width or 2"),
                        (("--val-reviews", "20000", "--test-reviews", "6000"), "at most 25000"),
                        (("--resume",), "--resume needs --out")):
    with pytest.raises(SystemExit):
      parse(*argv)
    assert message in capsys.readouterr().err


def test_equal_params_width_rule():
  study = lm.study
  for depth, width in ((1, 200), (3, 37)):
    stack = drnn.stacked_rnn("lstm", 24, (width,) * depth)
    count = drnn.count_params(jax.eval_shape(stack.init, jax.random.key(0)))
    assert study.stack_params(depth, width, 24) == count
  target = study.stack_params(1, 200, 200)
  for depth in (2, 3, 4):
    h = study.matched_width(depth, target, 200)
    gap = abs(study.stack_params(depth, h, 200) - target)
    assert gap <= min(abs(study.stack_params(depth, h + d, 200) - target) for d in (-1, 1))
  args = study.parser().parse_args(["--depths", "1,2"])
  assert study.plan(args, 200) == [((200,), ["equal_width", "equal_params"]),
                                   ((200, 200), ["equal_width"]), ((133, 133), ["equal_params"])]


def test_study_table_pairs_each_point_with_its_peer():
  study = lm.study
  args = study.parser().parse_args(["--depths", "1,2", "--minutes", "2"])
  base = ["--vocab-text", "corpus"]
  points = study.plan(args, 200)

  def row(impl, widths, ppl, speed):
    key = {"impl": impl, "hidden": list(widths), "size": {"minutes": 2.0}, "epochs": 3,
           "args": base}
    return {"key": key, "depth": len(widths), "tokens_per_epoch": 1000,
            "seconds_per_epoch": 40.0, "test_perplexity": ppl, "tokens_per_s": speed}

  rows = [row("jax", (200,), 300.0, 400.0), row("torch", (200,), 310.0, 500.0),
          row("jax", (133, 133), 350.0, 600.0), row("torch", (133, 133), 352.0, 400.0),
          row("jax", (200, 200), 330.0, 300.0)]  # its peer is missing: no line
  rows.append({**row("jax", (200,), 1.0, 1.0), "key": {**rows[0]["key"], "epochs": 9}})
  lines = study.table({"rows": rows, "probes": []}, args, points, base)
  assert len(lines) == 4  # header, rule, two complete points; the other study's row unused
  assert lines[2].startswith("| 1 x 200 | both | 1,000 | 40 | 300.0 | 310.0 | 400 | 500 |")
  assert lines[2].endswith("| 0.80x |")
  assert lines[3].startswith("| 2 x 133 | equal LSTM params |") and "| 1.50x |" in lines[3]



TINY = ["--limit-train-tokens", "6000", "--val-reviews", "10", "--test-reviews", "10",
        "--vocab", "300", "--embed", "16", "--hidden", "16,16", "--bptt", "10",
        "--batch-size", "4", "--dropout", "0", "--lr", "1e-2", "--schedule", "constant",
        "--eval-batch-size", "4", "--chunks-per-call", "1000"]  # one compiled call shape
# no dropout in the trainer runs: on this 2-core machine it doubles their compile time


def run_in_process(*args):
  """`python -m examples.lm.main ARGS` in this process (optax's Adam computes float **
  int32, which the suite's strict promotion rejects: standard promotion, as for users)."""
  with jax.numpy_dtype_promotion("standard"):
    return main.run_main(list(args))


def read_metrics(out):
  return json.loads((out / "metrics.json").read_text())


def test_training_lowers_perplexity_and_a_relaunch_continues(tmp_path, data_dir, capsys,
                                                             monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
  out = tmp_path / "run"
  assert run_in_process(*TINY, "--epochs", "1", "--out", str(out)) == 0
  log1 = capsys.readouterr().out
  first = read_metrics(out)
  assert f"writing metrics, curves and checkpoints to {out}" in log1
  assert "starting at epoch 1" in log1 and first["impl"] == "jax"
  (epoch1,) = first["history"]
  assert epoch1["val_perplexity"] < 0.5 * 300  # untrained: about the vocabulary size
  assert first["test"]["perplexity"] < 0.5 * 300 and (out / "curves.png").exists()
  assert run_in_process(*TINY, "--epochs", "2", "--out", str(out), "--sample",
                        "this movie was", "--sample-words", "5") == 0
  log2 = capsys.readouterr().out
  assert "continuing at epoch 2, global step 150" in log2  # 4 streams of 1500: 150 chunks
  cached = re.search(r"\((\d+) programs loaded from the compilation cache (\S+)\)", log2)
  assert cached and int(cached[1]) >= 1, log2  # the first run's programs
  assert "epoch 1 -" not in log2 and "epoch 2 -" in log2  # epoch 1 is not trained again
  second = read_metrics(out)
  assert second["history"][0] == epoch1 and second["steps"] == 300
  epoch2 = second["history"][1]
  assert epoch2["perplexity"] < epoch1["perplexity"]
  assert epoch2["val_perplexity"] < epoch1["val_perplexity"]
  assert second["sample"].startswith("this movie was ") and len(second["sample"].split()) == 8
  row = lm.report.row(second)
  assert (row["impl"], row["depth"], row["epochs"]) == ("jax", 2, 2)
  assert row["tokens_per_epoch"] == 4 * 1499  # 4 streams of 1500 tokens: 1499 targets each


def test_torch_peer_matches_the_model_and_runs_a_tiny_config(tmp_path, data_dir, torch,
                                                             corpus, capsys):
  from studies import lm_torch as peer
  from examples.lm import configs
  cfg = {**configs.DEFAULTS, "vocab": 300, "embed": 12, "hidden": (10, 10), "dropout": 0.0}
  net = peer.build(cfg).eval()
  ours = lm.model.language_model(300, 12, (10, 10))
  params = random_params(ours)  # the same weights in both: the same numbers
  arrays = {f"rnn.{k}": v for k, v in drnn.to_torch(ours.rnn, params["rnn"]).items()}
  arrays.update({"encoder.weight": params["embed"], "decoder.weight": params["out"]["w"].T,
                 "decoder.bias": params["out"]["b"]})
  net.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in arrays.items()})
  data = lm.input_pipeline.batchify(corpus.train, 3)[:, :21]
  with torch.no_grad():
    got, _ = net(torch.from_numpy(data).long())
  np.testing.assert_allclose(got.numpy(), numpy_logits(ours, params, data), rtol=1e-4,
                             atol=1e-5)

  out = tmp_path / "torch"
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # a tiny model: more threads only contend for the 2 cores
  try:
    assert peer.main([*TINY, "--dropout", "0.1", "--epochs", "1", "--data-dir", data_dir,
                      "--out", str(out)]) == 0
  finally:
    torch.set_num_threads(threads)
  metrics = read_metrics(out)
  assert "PyTorch" in capsys.readouterr().out and metrics["impl"] == "torch"
  assert metrics["history"][0]["val_perplexity"] < 0.5 * 300
  row = lm.report.row(metrics)
  assert row["torch"] == torch.__version__ and row["tokens_per_epoch"] == 4 * 1499
