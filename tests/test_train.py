"""Training utilities: clipping bounds, train/eval steps against direct jax.grad, losses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deeprnn_jax as drnn
from helpers import assert_trees_close


@pytest.fixture
def adam_promotion():
  """optax's Adam computes `decay ** count` (float ** int32), which the strict dtype
  promotion of conftest.py rejects; these tests run it under standard promotion."""
  with jax.numpy_dtype_promotion("standard"):
    yield


def _problem(batch=6, features=4, hidden=3):
  """A small two-layer network with dropout (the utilities are model-agnostic; the IMDB
  tests run them on the stacked RNN), its loss function and one batch."""
  rng = np.random.default_rng(0)  # NumPy draws: no compilation for the setup
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  params = {"w1": normal(features, hidden), "b1": normal(hidden), "w2": normal(hidden)}

  def loss_fn(params, batch, *, key=None, train=False):
    h = jnp.tanh(batch["xs"] @ params["w1"] + params["b1"])  # [B, H]
    if train:
      h = jnp.where(jax.random.bernoulli(key, 0.75, h.shape), h / 0.75, 0)
    return drnn.sigmoid_binary_loss(h @ params["w2"], batch["labels"])

  data = {"xs": normal(batch, features),
          "labels": jnp.asarray(rng.integers(0, 2, batch), jnp.int32)}
  return params, loss_fn, data


def _grads(loss_fn, params, batch, **kwargs):
  """(loss, aux), grads by a direct jitted jax.value_and_grad."""
  fn = lambda p: loss_fn(p, batch, **kwargs)
  return jax.jit(jax.value_and_grad(fn, has_aux=True))(params)


@pytest.mark.parametrize("max_norm", [1e-3, 0.1, 1e3])
def test_clipping_bounds_the_update_norm(max_norm):
  params, loss_fn, batch = _problem()
  _, grads = _grads(loss_fn, params, batch)
  g_norm = float(optax.tree.norm(grads))
  # lr 1 SGD: the update is minus the clipped gradient, so its norm is the clipped norm
  tx = drnn.optimizer(1.0, max_norm=max_norm, base=optax.sgd)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  u_norm = float(optax.tree.norm(updates))
  assert u_norm <= max_norm * (1 + 1e-5)
  np.testing.assert_allclose(u_norm, min(g_norm, max_norm), rtol=1e-5)
  if g_norm <= max_norm:  # below the bound nothing changes
    assert_trees_close(updates, jax.tree.map(jnp.negative, grads), rtol=0, atol=0)
  else:  # above it only the length changes, not the direction
    scaled = jax.tree.map(lambda g: -g * max_norm / g_norm, grads)
    assert_trees_close(updates, scaled, rtol=1e-5, atol=1e-9)


def test_no_clipping_is_plain_adam(adam_promotion):
  params, loss_fn, batch = _problem()
  _, grads = _grads(loss_fn, params, batch)
  ours, plain = drnn.optimizer(1e-2, max_norm=None), optax.adam(1e-2)
  u1, _ = jax.jit(ours.update)(grads, ours.init(params), params)
  u2, _ = jax.jit(plain.update)(grads, plain.init(params), params)
  assert_trees_close(u1, u2, rtol=0, atol=0)


def test_no_clipping_never_looks_at_the_global_norm():
  # a clip at an infinite bound would compute the norm, which overflows float32 here
  # (sqrt(2e76)), and rescale by max_norm / norm = inf / inf: NaN updates
  params = {"w": jnp.zeros((2,), jnp.float32)}
  grads = {"w": jnp.full((2,), 1e38, jnp.float32)}
  assert not np.isfinite(optax.global_norm(grads))
  tx = drnn.optimizer(1e-2, max_norm=None, base=optax.sgd)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["w"], np.full((2,), -1e36, np.float32))


def test_learning_rate_schedule_follows_the_step_count():
  params, loss_fn, batch = _problem()
  _, grads = _grads(loss_fn, params, batch)
  tx = drnn.optimizer(optax.linear_schedule(1.0, 0.0, 4), max_norm=None, base=optax.sgd)
  update = jax.jit(tx.update)
  state = tx.init(params)
  for scale in (1.0, 0.75, 0.5):  # lr at steps 0, 1, 2
    updates, state = update(grads, state, params)
    assert_trees_close(updates, jax.tree.map(lambda g: -scale * g, grads), rtol=1e-6, atol=0)


def test_train_step_matches_direct_grad_and_reports_norm_before_clipping():
  params, loss_fn, batch = _problem()
  key = jax.random.key(7)
  tx = drnn.optimizer(1.0, max_norm=1e-2, base=optax.sgd)
  (loss, aux), grads = _grads(loss_fn, params, batch, key=key, train=True)
  step = jax.jit(drnn.make_train_step(loss_fn, tx), donate_argnums=(0, 1))
  copy = jax.tree.map(jnp.array, params)
  new, _, metrics = step(copy, tx.init(copy), batch, key)
  g_norm = optax.tree.norm(grads)
  assert g_norm > 1e-2  # so clipping is active and the reported norm is the raw one
  np.testing.assert_allclose(metrics["grad_norm"], g_norm, rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(metrics["accuracy"], aux["accuracy"], rtol=1e-6)
  expected = jax.tree.map(lambda p, g: p - g * 1e-2 / g_norm, params, grads)
  assert_trees_close(new, expected, rtol=1e-5, atol=1e-7)


def test_one_jitted_step_changes_every_parameter(adam_promotion):
  params, loss_fn, batch = _problem()
  tx = drnn.optimizer(1e-3)
  step = jax.jit(drnn.make_train_step(loss_fn, tx), donate_argnums=(0, 1))
  before = jax.tree.map(np.asarray, params)
  new, _, _ = step(params, tx.init(params), batch, jax.random.key(1))
  for path, a, b in zip(jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(before),
                        jax.tree.leaves(new)):
    assert np.all(np.asarray(b) != a), f"{jax.tree_util.keystr(path[0])} has unchanged entries"


def test_train_step_compiles_once_and_jit_equals_no_jit():
  params, loss_fn, batch = _problem()
  tx = drnn.optimizer(0.1, max_norm=0.5, base=optax.sgd)
  raw = drnn.make_train_step(loss_fn, tx)
  step = jax.jit(raw)
  opt_state = tx.init(params)
  key = jax.random.key(3)
  p1, s1, m1 = step(params, opt_state, batch, key)
  p2, s2, m2 = raw(params, opt_state, batch, key)
  assert_trees_close((p1, m1), (p2, m2), rtol=1e-5, atol=1e-6)
  step(p1, s1, batch, jax.random.key(4))
  assert step._cache_size() == 1  # the second step reuses the first compilation


def test_grad_metrics_and_eval_step():
  params, loss_fn, batch = _problem()
  tx = drnn.optimizer(0.1, base=optax.sgd)
  norm_of_w = lambda grads: {"grad_norm/w2": optax.tree.norm(grads["w2"])}
  step = jax.jit(drnn.make_train_step(loss_fn, tx, grad_metrics=norm_of_w))
  _, grads = _grads(loss_fn, params, batch, key=jax.random.key(0), train=True)
  _, _, metrics = step(params, tx.init(params), batch, jax.random.key(0))
  np.testing.assert_allclose(metrics["grad_norm/w2"], jnp.linalg.norm(grads["w2"]), rtol=1e-5)
  evaluated = jax.jit(drnn.make_eval_step(loss_fn))(params, batch)
  loss, aux = jax.jit(loss_fn)(params, batch)  # no dropout in evaluation
  np.testing.assert_allclose(evaluated["loss"], loss, rtol=1e-6)
  np.testing.assert_allclose(evaluated["accuracy"], aux["accuracy"], rtol=1e-6)


def test_sigmoid_binary_loss_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=9).astype(np.float32) * 3
  labels = rng.integers(0, 2, size=9).astype(np.int32)
  weights = np.array([1, 1, 0, 2, 1, 0, 1, 1, 1], np.float32)
  loss, aux = drnn.sigmoid_binary_loss(jnp.asarray(logits), jnp.asarray(labels),
                                       jnp.asarray(weights))
  x = logits.astype(np.float64)
  p = 1 / (1 + np.exp(-x))
  per_row = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  np.testing.assert_allclose(loss, (weights * per_row).sum() / weights.sum(), rtol=1e-5)
  right = (p > 0.5) == labels
  np.testing.assert_allclose(aux["accuracy"], (weights * right).sum() / weights.sum(), rtol=1e-6)
  assert float(aux["weight"]) == weights.sum()


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=-1.0), "learning_rate: expected a positive finite number"),
    (dict(learning_rate=float("nan")), "learning_rate: expected a positive finite number"),
    (dict(learning_rate="1e-3"), "learning_rate: expected a positive finite number"),
    (dict(max_norm=0.0), "max_norm: expected a positive number or None"),
    (dict(max_norm="1"), "max_norm: expected a positive number or None"),
])
def test_optimizer_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    drnn.optimizer(**kwargs)


def test_step_factories_reject_bad_arguments():
  with pytest.raises(TypeError, match="base: expected an optax optimizer factory"):
    drnn.optimizer(base="adam")
  with pytest.raises(TypeError, match="loss_fn: expected a callable"):
    drnn.make_train_step(None, drnn.optimizer())
  with pytest.raises(TypeError, match="tx: expected an optax GradientTransformation"):
    drnn.make_train_step(lambda *a, **k: None, optax.adam)
  with pytest.raises(TypeError, match="loss_fn: expected a callable"):
    drnn.make_eval_step(3)
  with pytest.raises(ValueError, match=r"labels: expected the shape of logits"):
    drnn.sigmoid_binary_loss(jnp.zeros(3), jnp.zeros((3, 1)))
