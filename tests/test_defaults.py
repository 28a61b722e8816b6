"""Every default the docstrings promise, checked by calling *without* the argument.

Each test compares the default against an independent statement of the promise
(`jax.nn.initializers` called directly, optax's own chain, a mask drawn the documented
way), not against the library's own code path with the argument passed."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deeprnn_jax as drnn

F, H = 5, 4


def _params(cell, **kw):
  model = drnn.stacked_rnn(cell, F, (H,), **kw)
  return drnn.layer_params(model, model.init(jax.random.key(3)), 0)


def _key_parts(layer_key):
  """The keys `init` documents: split(key, L)[l], then (w_ih, w_hh, b) = split(., 3)."""
  return jax.random.split(jax.random.split(jax.random.key(3), 1)[0], 3)


@pytest.mark.parametrize("cell, nonlinearity, gates, kernel", [
    ("rnn", None, 1, "glorot_uniform"), ("rnn", "relu", 1, "he_uniform"),
    ("lstm", None, 4, "glorot_uniform"), ("gru", None, 3, "glorot_uniform")])
def test_default_initialisers(cell, nonlinearity, gates, kernel):
  """Input kernel Glorot-uniform (He-uniform for relu), each gate's recurrent block
  orthogonal, biases zero but the LSTM's forget block (1.0) and GRU's b_hn (0)."""
  p = _params(cell, **({"nonlinearity": nonlinearity} if nonlinearity else {}))
  k_ih, _, _ = _key_parts(0)
  want = getattr(jax.nn.initializers, kernel)()(k_ih, (F, gates * H), jnp.float32)
  np.testing.assert_array_equal(p["w_ih"], want)
  for g in range(gates):
    block = np.asarray(p["w_hh"][:, g * H:(g + 1) * H])
    np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)
  bias = np.zeros(gates * H, np.float32)
  if cell == "lstm":
    bias[H:2 * H] = 1.0  # the forget bias, default 1 (Keras' unit_forget_bias)
  np.testing.assert_array_equal(p["b"], bias)
  if cell == "gru":
    np.testing.assert_array_equal(p["b_hn"], 0.0)


def test_default_nonlinearity_is_tanh():
  model = drnn.stacked_rnn("rnn", F, (H,))
  params = model.init(jax.random.key(0))
  xs = jax.random.normal(jax.random.key(1), (2, 3, F)) * 3
  p = drnn.layer_params(model, params, 0)
  h = np.zeros((2, H), np.float32)
  for t in range(3):  # the Elman recurrence with tanh, in NumPy
    h = np.tanh(np.asarray(xs[:, t]) @ np.asarray(p["w_ih"]) + h @ np.asarray(p["w_hh"])
                + np.asarray(p["b"]))
  np.testing.assert_allclose(model.apply(params, xs)[0][:, -1], h, rtol=1e-5, atol=1e-6)


def test_default_options_and_signatures():
  """The facade's documented defaults: no dropout, per-step (not variational) masks,
  scan time loop, layer schedule, unroll 1, float32 params and zero float32 states."""
  model = drnn.stacked_rnn("lstm", F, (H, H))
  assert (model.dropout, model.recurrent_dropout, model.variational) == (0.0, 0.0, False)
  assert (model.time_loop, model.schedule, model.compute_dtype) == ("scan", "layer", None)
  assert (model.bidirectional, model.residual) == (False, False)
  sig = inspect.signature(drnn.stacked_rnn).parameters
  assert sig["forget_bias"].default == 1.0 and sig["unroll"].default == 1
  params = model.init(jax.random.key(0))
  assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  state = model.initial_state(2)
  assert all(a.dtype == jnp.float32 and not np.any(a) for a in jax.tree.leaves(state))
  xs = jnp.ones((2, 3, F))
  ys, _ = model.apply(params, xs)  # output="sequence", train=False by default
  assert ys.shape == (2, 3, H)
  # train=True with no dropout needs no key and changes nothing
  np.testing.assert_array_equal(model.apply(params, xs, train=True)[0], ys)


def test_default_between_layer_dropout_draws_a_mask_per_step():
  """`variational=False` by default: the same numbers as asking for per-step masks, not
  those of one mask per sequence."""
  xs = jnp.ones((2, 6, F))
  run = lambda **kw: drnn.stacked_rnn("gru", F, (8, 8), dropout=0.5, **kw).apply(
      params, xs, train=True, key=jax.random.key(4))[0]
  params = drnn.stacked_rnn("gru", F, (8, 8)).init(jax.random.key(0))
  np.testing.assert_array_equal(run(), run(variational=False))
  assert not np.allclose(run(), run(variational=True))


def test_default_optimizer_is_adam_1e3_clipped_at_1():
  """`optimizer()` is optax's clip_by_global_norm(1.0) then adam(1e-3), step for step."""
  grads = {"w": jnp.full((3,), 10.0), "b": jnp.array([-4.0])}  # global norm ~17.8
  params = jax.tree.map(jnp.zeros_like, grads)
  want_tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
  got_tx, raw_tx = drnn.optimizer(), optax.adam(1e-3)
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam: float ** int32
    s_got, s_want, s_raw = got_tx.init(params), want_tx.init(params), raw_tx.init(params)
    for step in range(3):
      g = jax.tree.map(lambda a: a * (1 + step), grads)  # the norm changes: clipping shows
      u_got, s_got = got_tx.update(g, s_got, params)
      u_want, s_want = want_tx.update(g, s_want, params)
      u_raw, s_raw = raw_tx.update(g, s_raw, params)
      for a, b in zip(jax.tree.leaves(u_got), jax.tree.leaves(u_want)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
  assert not np.allclose(u_got["w"], u_raw["w"], rtol=1e-4)  # the clip stage is there
