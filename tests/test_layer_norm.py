"""Layer-normalised LSTM and GRU cells (Ba et al. 2016) against explicit NumPy equations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from deeprnn_jax._src.cells import make_cell
from helpers import assert_trees_close

EPS = 1e-5


def ln(a, scale, shift=0.0, blocks=1):
  """Layer norm of each of `blocks` equal parts of the last axis, in float64."""
  parts = np.split(a, blocks, axis=-1)
  out = [(p - p.mean(-1, keepdims=True)) / np.sqrt(p.var(-1, keepdims=True) + EPS)
         for p in parts]
  return np.concatenate(out, axis=-1) * scale + shift


def sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def numpy_ln_lstm(p, xs, h, c, lengths):
  """Ba et al. 2016, eq. 20-22, gate blocks normalised separately; xs [T, B, F]."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  ys = []
  for t in range(xs.shape[0]):
    a = (ln(xs[t] @ p["w_ih"], p["ln_ih_scale"], blocks=4)
         + ln(h @ p["w_hh"], p["ln_hh_scale"], blocks=4) + p["b"])
    i, f, g, o = np.split(a, 4, axis=-1)
    c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h_new = sigmoid(o) * np.tanh(ln(c_new, p["ln_c_scale"], p["ln_c_bias"]))
    valid = (t < lengths)[:, None]
    h, c = np.where(valid, h_new, h), np.where(valid, c_new, c)
    ys.append(np.where(valid, h_new, 0.0))
  return np.stack(ys), h, c


def numpy_ln_gru(p, xs, h, lengths):
  """Reset-after GRU with both projections normalised per gate block; xs [T, B, F]."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  ys = []
  for t in range(xs.shape[0]):
    xr, xz, xn = np.split(ln(xs[t] @ p["w_ih"], p["ln_ih_scale"], blocks=3) + p["b"], 3, -1)
    hr, hz, hn = np.split(ln(h @ p["w_hh"], p["ln_hh_scale"], blocks=3), 3, -1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = np.tanh(xn + r * (hn + p["b_hn"]))
    h_new = (1 - z) * n + z * h
    valid = (t < lengths)[:, None]
    h = np.where(valid, h_new, h)
    ys.append(np.where(valid, h_new, 0.0))
  return np.stack(ys), h


def random_params(init, rng, scale=0.7):
  """Normal draws in every leaf of `init(key)`'s pytree, from NumPy (nothing compiled)."""
  shapes = jax.eval_shape(init, jax.random.key(0))
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), jnp.float32),
                      shapes)


def setup(kind, F=3, H=5, T=6, B=4, seed=0):
  cell = make_cell(kind, H, layer_norm=True)
  rng = np.random.default_rng(seed)
  params = random_params(lambda k: cell.init(k, F), rng)
  xs = rng.normal(size=(T, B, F)).astype(np.float32)
  h0 = rng.normal(size=(B, H)).astype(np.float32)
  c0 = rng.normal(size=(B, H)).astype(np.float32)
  lengths = np.array([T, 3, 0, 1])[:B].astype(np.int32)
  return cell, params, xs, h0, c0, lengths


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_layer_norm_cell_matches_numpy_equations(kind):
  cell, params, xs, h0, c0, lengths = setup(kind)
  carry = drnn.LSTMState(jnp.asarray(h0), jnp.asarray(c0)) if kind == "lstm" else h0
  final, ys = drnn.scan_layer(cell, params, jnp.asarray(xs), carry, jnp.asarray(lengths))
  x64 = xs.astype(np.float64)
  if kind == "lstm":
    want_ys, want_h, want_c = numpy_ln_lstm(params, x64, h0.astype(np.float64),
                                            c0.astype(np.float64), lengths)
    np.testing.assert_allclose(final.c, want_c, rtol=1e-5, atol=1e-5)
    final = final.h
  else:
    want_ys, want_h = numpy_ln_gru(params, x64, h0.astype(np.float64), lengths)
  np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(final, want_h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_scan_equals_step_loop(kind):
  """The layer-norm cell's time scan == cell.step looped in Python, with padding."""
  cell, params, xs, h0, c0, lengths = setup(kind, seed=3)
  carry = drnn.LSTMState(jnp.asarray(h0), jnp.asarray(c0)) if kind == "lstm" else h0
  got = drnn.scan_layer(cell, params, jnp.asarray(xs), carry, jnp.asarray(lengths))
  want = drnn.loop_layer(cell, params, jnp.asarray(xs), carry, jnp.asarray(lengths))
  assert_trees_close(got, want)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_outputs_invariant_to_rescaled_kernels(kind):
  """LN's defining property: scaling a gate block of w_ih or w_hh changes nothing."""
  cell, params, xs, h0, c0, lengths = setup(kind, seed=5)
  carry = drnn.LSTMState(jnp.asarray(h0), jnp.asarray(c0)) if kind == "lstm" else h0
  G, H = cell.gates, cell.hidden_size
  block_scale = jnp.repeat(jnp.array([3.0, 1.5, 7.0, 2.0][:G]), H)  # one factor per gate
  scaled = dict(params, w_ih=params["w_ih"] * block_scale, w_hh=params["w_hh"] * 4.0)
  want = drnn.scan_layer(cell, params, jnp.asarray(xs), carry)
  got = drnn.scan_layer(cell, scaled, jnp.asarray(xs), carry)
  assert_trees_close(got, want, rtol=1e-3, atol=1e-3)  # up to eps in the variance
  plain = make_cell(kind, H)  # without LN the same rescaling does change the outputs
  plain_params = {k: params[k] for k in jax.eval_shape(lambda k: plain.init(k, 3),
                                                      jax.random.key(0))}
  plain_scaled = {k: scaled[k] for k in plain_params}
  diff = jnp.abs(drnn.scan_layer(plain, plain_params, jnp.asarray(xs), carry)[1]
                 - drnn.scan_layer(plain, plain_scaled, jnp.asarray(xs), carry)[1])
  assert float(diff.max()) > 1e-2


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_layout_unchanged_without_layer_norm(kind):
  F, H = 3, 4
  with_ln = make_cell(kind, H, layer_norm=True).init(jax.random.key(0), F)
  without = make_cell(kind, H).init(jax.random.key(0), F)
  base_keys = {"w_ih", "w_hh", "b"} | ({"b_hn"} if kind == "gru" else set())
  assert set(without) == base_keys
  ln_keys = {"ln_ih_scale", "ln_hh_scale"} | ({"ln_c_scale", "ln_c_bias"}
                                              if kind == "lstm" else set())
  assert set(with_ln) == base_keys | ln_keys
  assert_trees_close({k: with_ln[k] for k in base_keys}, without)  # same draws
  G = 4 if kind == "lstm" else 3
  np.testing.assert_array_equal(with_ln["ln_ih_scale"], np.ones(G * H))  # LN starts as
  np.testing.assert_array_equal(with_ln["ln_hh_scale"], np.ones(G * H))  # a pure norm
  if kind == "lstm":
    np.testing.assert_array_equal(with_ln["ln_c_bias"], np.zeros(H))
  assert make_cell(kind, H, layer_norm=True).layer_norm
  assert not make_cell(kind, H).layer_norm


def test_stacked_rnn_takes_layer_norm():
  model = drnn.stacked_rnn("lstm", 3, (4, 4, 4), layer_norm=True)
  rng = np.random.default_rng(0)
  params = random_params(model.init, rng)
  xs = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
  assert all(c.layer_norm for c in model.cells)
  ys, _ = model.apply(params, xs)  # the depth-scanned stack == the NumPy cell, layer by layer
  want = np.swapaxes(np.asarray(xs, np.float64), 0, 1)  # [T, B, F]
  zeros = np.zeros((2, 4))
  for l in range(3):
    want, _, _ = numpy_ln_lstm(drnn.layer_params(model, params, l), want, zeros, zeros,
                               np.array([5, 5]))
  np.testing.assert_allclose(ys, np.swapaxes(want, 0, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bfloat16_stays_bfloat16_and_close(kind):
  cell, params, xs, h0, c0, lengths = setup(kind, seed=7)
  carry = drnn.LSTMState(jnp.asarray(h0), jnp.asarray(c0)) if kind == "lstm" else h0
  bf16 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), t)
  new, y = cell.step(params, carry, xs[0])
  new16, y16 = cell.step(bf16(params), bf16(carry), bf16(xs[0]))
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves((new16, y16)))
  assert_trees_close(jax.tree.map(lambda a: a.astype(jnp.float32), (new16, y16)), (new, y),
                     rtol=5e-2, atol=5e-2)


def test_layer_norm_bad_input():
  with pytest.raises(ValueError, match="layer_norm: only the 'lstm' and 'gru'"):
    make_cell("rnn", 4, layer_norm=True)
  with pytest.raises(TypeError, match="layer_norm: expected True or False"):
    drnn.lstm(4, layer_norm="yes")
