"""The oneDNN time loop (`time_loop="onednn"`) and the automatic choice (`"auto"`).

Values and gradients of the fused loop equal the scan's on a grid of cells, depths,
widths, lengths (0 included) and directions, with dropout between layers and residual
connections; the GRU's gate permutation is checked against PyTorch's layout through
the library's own converters; `"auto"` picks each layer's loop by the documented rule,
says why, and falls back to the scan, with the reason, when the kernel cannot run.
The kernel is built by `pip install` (CMakeLists.txt); without it the fused tests skip,
except under CI, where they fail.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from deeprnn_jax._src.loops import auto
from deeprnn_jax._src.loops import onednn
from deeprnn_jax._src.loops.onednn_kernel import library

import helpers

TOL = dict(rtol=2e-5, atol=2e-6)


def kernel():
  """Skips (fails under CI) when the kernel cannot run here."""
  status = library.status()
  if status.lib is None:
    if os.environ.get("CI"):
      pytest.fail(f"CI must build and load the oneDNN kernel: {status.reason}")
    pytest.skip(status.reason)


def _scale(tree):
  return max(float(jnp.abs(a).max()) for a in jax.tree.leaves(tree))


def assert_close_scaled(got, want, rtol=2e-5):
  """Every leaf within rtol of the largest magnitude of `want`: a tolerance that scales
  with the numbers, not a recording's last digits."""
  scale = _scale(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=0, atol=rtol * scale + 1e-7)


def run_both(cell, widths, F=5, B=4, T=9, lengths=None, **options):
  models = {loop: drnn.stacked_rnn(cell, F, widths, time_loop=loop, **options)
            for loop in ("scan", "onednn")}
  params = helpers.randomize(models["scan"].init(jax.random.key(3)), jax.random.key(4))
  xs = jax.random.normal(jax.random.key(1), (B, T, F))
  state = jax.tree.map(lambda a: jax.random.normal(jax.random.key(5), a.shape),
                       models["scan"].initial_state(B))
  train = options.get("dropout", 0) > 0

  def loss(model):
    def f(params, xs, state):
      ys, final = model.apply(params, xs, lengths, state, train=train, key=jax.random.key(6))
      return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.cos(a)) for a in jax.tree.leaves(final)), \
          (ys, final)
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

  return {loop: loss(m)(params, xs, state) for loop, m in models.items()}


GRID = [("lstm", (16,), None), ("gru", (16,), None), ("lstm", (16, 16, 16), "ragged"),
        ("lstm", (16, 16), "full"),
        ("gru", (17, 17), "ragged"), ("lstm", (8, 24), "ragged"), ("gru", (24, 8, 8), None)]


@pytest.mark.parametrize("cell, widths, lengths", GRID)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_values_and_gradients_equal_the_scan(cell, widths, lengths, bidirectional):
  kernel()
  lengths = {None: None, "ragged": jnp.asarray([9, 3, 0, 1], jnp.int32),
             "full": jnp.full((4,), 9, jnp.int32)}[lengths]
  got = run_both(cell, widths, lengths=lengths, bidirectional=bidirectional)
  (v_scan, (ys_scan, st_scan)), g_scan = got["scan"]
  (v_fused, (ys_fused, st_fused)), g_fused = got["onednn"]
  assert_close_scaled((ys_fused, st_fused), (ys_scan, st_scan))
  assert_close_scaled(g_fused, g_scan)
  np.testing.assert_allclose(v_fused, v_scan, rtol=2e-5)
  if lengths is not None and int(lengths[2]) == 0:  # past a length: zeros out, no gradient in
    assert not np.asarray(ys_fused)[2].any()
    assert not np.asarray(g_fused[1])[2].any()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dropout_and_residual_around_the_kernel(cell):
  kernel()
  got = run_both(cell, (16, 16, 16), lengths=jnp.asarray([9, 5, 2, 9], jnp.int32),
                 dropout=0.3, residual=True)
  assert_close_scaled(got["onednn"][1], got["scan"][1])
  assert_close_scaled(got["onednn"][0][1], got["scan"][0][1])


def test_gru_permutation_follows_the_gate_blocks():
  H = 3
  params = {"w_ih": jnp.arange(2 * 3 * H, dtype=jnp.float32).reshape(2, 3 * H),
            "w_hh": jnp.zeros((H, 3 * H)), "b": jnp.arange(3 * H, dtype=jnp.float32),
            "b_hn": jnp.full((H,), -1.0)}
  w_layer, _, bias = onednn.pack("gru", params)
  r, z, n = (params["w_ih"][:, k * H:(k + 1) * H] for k in range(3))
  np.testing.assert_array_equal(w_layer, jnp.concatenate([z, r, n], axis=1))  # u, r, n
  np.testing.assert_array_equal(bias, [3, 4, 5, 0, 1, 2, 6, 7, 8, -1, -1, -1])


def test_no_recompilation_and_dtype_kept():
  kernel()
  model = drnn.stacked_rnn("gru", 5, (16, 16), time_loop="onednn")
  params = model.init(jax.random.key(0))
  traces = []

  @jax.jit
  def f(params, xs):
    traces.append(1)
    return model.apply(params, xs)[0]

  for seed in range(3):
    ys = f(params, jax.random.normal(jax.random.key(seed), (4, 6, 5)))
  assert len(traces) == 1 and ys.dtype == jnp.float32


def test_choices_follow_the_rule():
  kernel()
  model = drnn.stacked_rnn("lstm", 8, (5, 64, 64), time_loop="auto")
  got = drnn.time_loop_choices(model)
  assert [c.time_loop for c in got] == ["scan", "onednn", "onednn"]
  assert f"< {auto.MIN_WIDTH}" in got[0].reason
  assert model.groups == ((0, 1), (1, 1), (2, 1))
  for options, reason in (({"remat": True}, "remat=True"),
                          ({"recurrent_dropout": 0.1}, "recurrent_dropout"),
                          ({"layer_norm": True}, "layer_norm"),
                          ({"schedule": "wavefront"}, "schedule")):
    model = drnn.stacked_rnn("lstm", 8, (32, 32), time_loop="auto", **options)
    assert all(c.time_loop == "scan" and reason in c.reason
               for c in drnn.time_loop_choices(model)), options
  scan_model = drnn.stacked_rnn("lstm", 8, (32, 32))
  assert all(c.time_loop == "scan" and "asked for" in c.reason
             for c in drnn.time_loop_choices(scan_model))


def test_auto_equals_the_scan_and_runs_it_on_bfloat16():
  kernel()
  scan = drnn.stacked_rnn("lstm", 5, (5, 32), time_loop="scan")
  fast = drnn.stacked_rnn("lstm", 5, (5, 32), time_loop="auto")
  params = helpers.randomize(scan.init(jax.random.key(0)), jax.random.key(1))
  xs = jax.random.normal(jax.random.key(2), (3, 6, 5))
  assert_close_scaled(fast.apply(params, xs), scan.apply(params, xs))
  half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
  ys, _ = fast.apply(half, xs.astype(jnp.bfloat16))  # the scan: oneDNN runs float32 here
  assert ys.dtype == jnp.bfloat16


def test_without_the_kernel_auto_falls_back_and_onednn_says_why(monkeypatch):
  missing = library.Status(None, "oneDNN is not installed (pip install ...)")
  monkeypatch.setattr(library, "status", lambda: missing)
  model = drnn.stacked_rnn("gru", 5, (32, 32), time_loop="auto")
  assert [c.time_loop for c in drnn.time_loop_choices(model)] == ["scan", "scan"]
  assert "not installed" in drnn.time_loop_choices(model)[0].reason
  assert model.groups == ((0, 1), (1, 1))
  params = model.init(jax.random.key(0))
  xs = jnp.ones((2, 4, 5))
  ys, _ = model.apply(params, xs)
  want, _ = drnn.stacked_rnn("gru", 5, (32, 32)).apply(params, xs)
  np.testing.assert_array_equal(ys, want)
  fused = drnn.stacked_rnn("gru", 5, (32, 32), time_loop="onednn")
  with pytest.raises(ValueError, match="time_loop: time_loop='onednn' is unavailable: "
                                       "oneDNN is not installed"):
    fused.apply(params, xs)


@pytest.mark.parametrize("options, match", [
    ({"remat": True}, "time_loop: 'onednn' does not support remat"),
    ({"layer_norm": True}, "time_loop: 'onednn' does not support layer_norm"),
    ({"schedule": "wavefront"}, "expected schedule='layer'")])
def test_unsupported_options_name_the_option(options, match):
  with pytest.raises(ValueError, match=match):
    drnn.stacked_rnn("lstm", 5, (8, 8), time_loop="onednn", **options)


def test_resets_and_float64_are_refused_with_the_option_named():
  kernel()
  model = drnn.stacked_rnn("lstm", 5, (8,), time_loop="onednn")
  params = model.init(jax.random.key(0))
  xs = jnp.ones((2, 4, 5))
  with pytest.raises(ValueError, match="resets: time_loop='onednn' expected None"):
    model.apply(params, xs, resets=jnp.zeros((2, 4), bool))
  with pytest.raises(ValueError, match="expected float32"):
    model.apply(jax.tree.map(lambda a: a.astype(jnp.bfloat16), params),
                xs.astype(jnp.bfloat16))


def test_the_trainers_line_merges_equal_neighbours():
  kernel()
  from examples.common import cli
  line = cli.time_loops(drnn.stacked_rnn("gru", 8, (5, 64, 64), time_loop="auto"))
  assert line.startswith("time loops: layer 0: scan (width 5 < 16")
  assert "; layers 1-2: onednn (GRU of width 64" in line
