"""Tests of the benchmark suite's own logic: the three impls run the same workload.

Given the same weights (PyTorch's, copied with `drnn.from_torch` and mapped into Flax's
per-gate layout), deeprnn_jax, Flax and PyTorch give the same loss on the benchmark batch
and stay together over a few clipped Adam steps, so the timed steps do the same work.

PyTorch keeps two biases per gate, b_ih and b_hh, where deeprnn_jax and Flax keep their
sum (and the GRU's separate recurrent n bias). Adam moves each of the two by about the
learning rate, so their sum moves twice as far: the parameterisations train differently
although they compute the same function. The parity test therefore zeroes the gradient
of PyTorch's redundant b_hh entries, which makes its Adam steps those of the summed bias.
"""

import json
import os
import pathlib
import sys

import jax
import numpy as np
import pytest

import deeprnn_jax as drnn
import grid
import workloads as wl

HERE = pathlib.Path(__file__).resolve().parent


def _freeze_redundant_biases(module, spec):
  """Zero gradients for b_hh, except the GRU's recurrent n bias (which is our b_hn)."""
  import torch

  for name, p in module.rnn.named_parameters():
    if name.startswith("bias_hh"):
      mask = torch.zeros_like(p)
      if spec.cell == "gru":
        mask[2 * spec.hidden:] = 1.0
      p.register_hook(lambda g, mask=mask: g * mask)


def _same_weights(spec):
  """A torch module and the deeprnn_jax and Flax params holding its weights."""
  module = wl.torch_module(spec, seed=3)
  sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
  model = wl.make_deeprnn_model(spec.cell, spec.features, spec.hidden, spec.depth)
  rnn_sd = {k[len("rnn."):]: v for k, v in sd.items() if k.startswith("rnn.")}
  head = {"w": sd["head.weight"].T, "b": sd["head.bias"]}  # torch keeps W as [1, H]
  ours = {"rnn": drnn.from_torch(model, rnn_sd), "head": jax.tree.map(np.asarray, head)}
  layers = [drnn.layer_params(model, ours["rnn"], l) for l in range(spec.depth)]
  return module, ours, wl.deeprnn_to_flax(spec.cell, layers, ours["head"])


def _keras_weights(spec, ours):
  """Keras `set_weights` arrays holding our params: the RNN layers', then the head's.
  Copies: `ours` may view the torch module's memory, which its steps update in place, and
  JAX on a CPU may alias a NumPy array instead of copying it."""
  model = wl.make_deeprnn_model(spec.cell, spec.features, spec.hidden, spec.depth)
  layers = [a for layer in drnn.to_keras(model, ours["rnn"]) for a in layer]
  return [np.array(a, copy=True) for a in layers + [ours["head"]["w"], ours["head"]["b"]]]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_impls_compute_the_same_training_steps(cell):
  pytest.importorskip("torch")
  # depth 3: a stand-alone first layer and a depth-scanned group of two
  spec = wl.Spec(cell, hidden=8, depth=3, batch=4, time=6, features=5)
  module, ours, flax_params = _same_weights(spec)
  _freeze_redundant_biases(module, spec)
  keras_weights = _keras_weights(spec, ours)
  runs = {"deeprnn_jax": wl.deeprnn_workload(spec, params=ours),
          "flax": wl.flax_workload(spec, params=flax_params),
          "torch": wl.torch_workload(spec, module=module),
          "keras": wl.keras_workload(spec, weights=keras_weights)}
  losses = {impl: [float(w.step()) for _ in range(3)] for impl, w in runs.items()}
  for impl in ("flax", "torch", "keras"):
    # step 1 is the forward pass alone; steps 2-3 follow a clipped Adam update each.
    # Keras' GRU trains a recurrent bias for r and z as well (torch's are frozen above,
    # Keras has no per-element freezing): the same function, different updates
    n = 1 if (impl, cell) == ("keras", "gru") else 3
    np.testing.assert_allclose(losses["deeprnn_jax"][:n], losses[impl][:n], rtol=2e-5,
                               atol=2e-6, err_msg=f"deeprnn_jax vs {impl}")
  assert losses["deeprnn_jax"][0] != losses["deeprnn_jax"][2]  # the steps did train


def test_train_flops_count_every_matmul_weight():
  spec = wl.Spec("lstm", hidden=8, depth=3, batch=4, time=6, features=5)
  model = wl.make_deeprnn_model(spec.cell, spec.features, spec.hidden, spec.depth)
  params = model.init(jax.random.key(0))
  weights = sum(drnn.layer_params(model, params, l)[n].size
                for l in range(spec.depth) for n in ("w_ih", "w_hh"))
  # a [B, in] @ [in, out] product is 2*B*in*out FLOPs: once per step for the stack,
  # once per batch for the [H, 1] head; training is 3x the forward pass
  expected = 3 * (2 * spec.batch * spec.time * weights + 2 * spec.batch * spec.hidden)
  assert wl.train_flops(spec) == expected


def test_opts_are_parsed_and_labelled():
  assert wl.parse_opts(None) == [{}]
  sets = wl.parse_opts('[{}, {"unroll": 2}]')
  assert [wl.impl_label(s) for s in sets] == ["deeprnn_jax", "deeprnn_jax[unroll=2]"]
  assert wl.impl_label({"schedule": "wavefront", "unroll": 4}) == \
      "deeprnn_jax[schedule=wavefront,unroll=4]"
  with pytest.raises(ValueError, match="bench opts: expected JSON"):
    wl.parse_opts("{schedule: wavefront}")
  with pytest.raises(ValueError, match="list of objects"):
    wl.parse_opts(json.dumps([1, 2]))


def test_deeprnn_opts_reach_stacked_rnn():
  spec = wl.Spec("gru", hidden=4, depth=2, batch=2, time=3, features=3)
  assert wl.deeprnn_workload(spec, {"unroll": 3}).impl == "deeprnn_jax[unroll=3]"
  with pytest.raises(ValueError, match="unroll"):
    wl.deeprnn_workload(spec, {"unroll": 0})


def _points(env=None, **options):
  return grid.bench_points(lambda name: options.get(name), env or {})


def test_grid_default_is_quick_and_interleaves_impls():
  ids = [grid.point_id(p) for p in _points()]
  assert ids[:5] == ["rnn-H16-L01-deeprnn_jax", "rnn-H16-L01-flax", "rnn-H16-L01-torch",
                     "rnn-H16-L01-keras", "rnn-H16-L02-deeprnn_jax"]
  assert len(ids) == 3 * 1 * 2 * 4 and len(set(ids)) == len(ids)
  full = _points({"DEEPRNN_BENCH_GRID": "full"})
  assert len(full) == 3 * 2 * 5 * 4 and full[0].spec == wl.Spec("rnn", 128, 1, 64, 100, 32)


def test_grid_options_override_environment_and_grid():
  env = {"DEEPRNN_BENCH_GRID": "full", "DEEPRNN_BENCH_IMPL": "torch",
         "DEEPRNN_BENCH_OPTS": '{"unroll": 2}'}
  points = _points(env, impl="deeprnn_jax,flax", cells="gru", depth="4", time="7",
                   opts=["{}", '{"unroll": 4}'])
  assert [p.label for p in points] == ["deeprnn_jax", "deeprnn_jax[unroll=4]", "flax"] * 2
  assert {(p.spec.cell, p.spec.depth, p.spec.time, p.spec.batch) for p in points} == \
      {("gru", 4, 7, 64)}
  assert [p.label for p in _points(env)] == ["torch"] * 3 * 2 * 5  # the environment alone
  del env["DEEPRNN_BENCH_IMPL"]
  assert [p.label for p in _points(env)[:4]] == ["deeprnn_jax[unroll=2]", "flax", "torch",
                                                  "keras"]


def test_isolation_follows_the_grid_and_the_option():
  assert not any(p.isolate for p in _points())  # quick: in this process, for the code paths
  assert all(p.isolate for p in _points({"DEEPRNN_BENCH_GRID": "full"}))  # published: alone
  assert not any(p.isolate for p in _points({"DEEPRNN_BENCH_GRID": "full"}, isolate="0"))
  with pytest.raises(ValueError, match="--bench-isolate: expected 0 or 1"):
    _points(isolate="yes")


def test_a_point_measured_in_its_own_process(tmp_path):
  """measure_point.py, as the suite runs it: a fresh interpreter, one JSON line back."""
  import subprocess
  point = {"impl": "deeprnn_jax", "spec": wl.Spec("gru", 4, 2, 2, 3, 5)._asdict(),
           "opts": {}, "seconds": 0.0}
  done = subprocess.run([sys.executable, str(HERE / "measure_point.py"), json.dumps(point)],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  info = json.loads(done.stdout.strip().splitlines()[-1])
  assert len(info["step_times_s"]) == 3 and min(info["step_times_s"]) > 0  # MIN_ROUNDS
  assert info["params"] == wl.deeprnn_workload(wl.Spec("gru", 4, 2, 2, 3, 5)).param_count
  assert info["compile_s"] > 0 and info["memory"]["rss_growth_bytes"] >= 0


@pytest.mark.parametrize("options,match", [
    ({"grid": "huge"}, "expected one of"), ({"depth": "2,x"}, "comma list of ints"),
    ({"cells": "lstm,tcn"}, "--bench-cells"), ({"hidden": "0"}, "positive"),
    ({"time": "10,20"}, "one value"), ({"impl": "tensorflow"}, "--bench-impl"),
    ({"opts": ["[1]"]}, "bench opts")])
def test_grid_rejects_bad_settings(options, match):
  with pytest.raises(ValueError, match=match):
    _points(**options)


def _fake_run(path):
  """A pytest-benchmark JSON with two points of three impls, as the suite writes it."""
  rows = []
  for depth, scale in ((1, 1.0), (4, 0.5)):
    for impl, tok, compile_s in (("deeprnn_jax", 3000.0, 2.0), ("flax", 2000.0, 4.0),
                                 ("torch", 1500.0, None)):
      rows.append({"stats": {"min": 0.9, "median": 1.0, "max": 1.5}, "extra_info": dict(
          impl=impl, cell="lstm", hidden=128, depth=depth, batch=64, time=100, features=32,
          params=1000 * depth, compile_s=compile_s, tokens_per_s=tok * scale,
          mfu=0.25 * scale, matmul_gflops=40.0, device="cpu: test (2 cores)",
          load_avg_1min=3.0, date="2026-01-02T03:04:05")})
  path.write_text(json.dumps({"machine_info": {"cpu": {"count": 2}}, "benchmarks": rows}))


def test_report_writes_ratios_and_plots(tmp_path):
  import report

  _fake_run(tmp_path / "run.json")
  md = report.write_report([tmp_path / "run.json"], tmp_path, "run")
  text = md.read_text()
  assert "cpu: test (2 cores)" in text and "B=64, T=100, F=32" in text
  assert "median 60%, largest 60%" in text  # (1.5 - 0.9) / 1.0
  header = next(line for line in text.splitlines() if line.startswith("| cell"))
  cols = [c.strip() for c in header.strip("|").split("|")]
  row = next(line for line in text.splitlines() if line.startswith("| lstm | 128 | 4 |"))
  values = dict(zip(cols, (c.strip() for c in row.strip("|").split("|"))))
  assert values["deeprnn_jax / flax"] == "1.50" and values["deeprnn_jax / torch"] == "2.00"
  assert values["flax compile s"] == "4.00" and "torch compile s" not in values
  assert values["deeprnn_jax MFU"] == "12%"
  for suffix in report.PLOTS:
    png = tmp_path / f"run-{suffix}.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and f"({png.name})" in text


def test_keras_seed_pads_as_keras_pad_sequences():
  keras = pytest.importorskip("keras")
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "tools"))
  import keras_seed
  from examples.imdb import input_pipeline

  rows = [[5, 6, 7, 8, 9, 10], [3], [], [4, 4, 2]]
  tokens, lengths = input_pipeline.encode([[str(t) for t in r] for r in rows],
                                          {str(t): t for t in range(2, 11)}, maxlen=4)
  got = keras_seed.left_padded(input_pipeline.Reviews(tokens, lengths, lengths), 4)
  np.testing.assert_array_equal(got, keras.utils.pad_sequences(rows, maxlen=4))
