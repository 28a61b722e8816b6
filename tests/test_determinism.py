"""Determinism: the same seed gives bit-identical parameters after N training steps.

A stacked LSTM classifier (a depth-scanned pair of layers included) with dropout between
layers and recurrent dropout trains for a few jitted steps of clipped Adam
(`drnn.optimizer`, `drnn.make_train_step`) on the CPU, twice from the same seed, with
every JAX cache cleared in between so that the second run traces and compiles afresh.
Parameters, optimizer state, losses and gradient norms must be equal bit for bit. Another
seed, or the same seed with other dropout keys, must give other values in every
parameter (so the runs compared did use dropout, driven by the key).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn

STEPS = 6
BATCH, TIME, FEATURES = 8, 12, 5


def make_data():
  """Fixed batches (NumPy, independent of the training seed), right-padded with lengths."""
  rng = np.random.default_rng(1234)
  return [{"xs": jnp.asarray(rng.standard_normal((BATCH, TIME, FEATURES)), jnp.float32),
           "lengths": jnp.asarray(rng.integers(1, TIME + 1, BATCH), jnp.int32),
           "labels": jnp.asarray(rng.integers(0, 2, BATCH), jnp.int32)}
          for _ in range(STEPS)]


def make_model():
  # 5 -> 8 alone, then two 8 -> 8 layers run by the depth scan
  rnn = drnn.stacked_rnn("lstm", FEATURES, (8, 8, 8), dropout=0.3, recurrent_dropout=0.2)

  def init(key):
    k_rnn, k_head = jax.random.split(key)
    return {"rnn": rnn.init(k_rnn), "head": 0.3 * jax.random.normal(k_head, (8,))}

  def loss_fn(params, batch, *, key=None, train=False):
    last, _ = rnn.apply(params["rnn"], batch["xs"], batch["lengths"], train=train, key=key,
                        output="last")  # [B, 8]
    return drnn.sigmoid_binary_loss(last @ params["head"], batch["labels"])

  return init, loss_fn


def make_step(loss_fn):
  tx = drnn.optimizer(1e-2, max_norm=0.02)  # gradient norms are ~0.05: clipping acts
  return tx, jax.jit(drnn.make_train_step(loss_fn, tx), donate_argnums=(0, 1))


def train(seed, init, tx, step, dropout_stream=0):
  """STEPS steps from `seed`: (params, opt_state, losses, gradient norms) as NumPy.

  Step i's dropout key is fold_in(key(seed), i) (`dropout_stream` shifts it)."""
  key = jax.random.key(seed)
  params = init(key)
  opt_state = tx.init(params)
  losses, norms = [], []
  for i, batch in enumerate(make_data()):
    params, opt_state, m = step(params, opt_state, batch,
                                jax.random.fold_in(key, i + dropout_stream))
    losses.append(float(m["loss"]))
    norms.append(float(m["grad_norm"]))
  as_np = lambda tree: jax.tree.map(np.asarray, tree)
  return as_np(params), as_np(opt_state), np.array(losses), np.array(norms)


@pytest.fixture(scope="module")
def runs():
  # optax's Adam computes `decay ** count` (float ** int32), which conftest's strict
  # promotion rejects
  with jax.numpy_dtype_promotion("standard"):
    init, loss_fn = make_model()
    tx, step = make_step(loss_fn)
    first = train(7, init, tx, step)
    other_seed = train(8, init, tx, step)
    other_masks = train(7, init, tx, step, dropout_stream=1000)
    jax.clear_caches()  # the second run of seed 7 traces and compiles from scratch
    init, loss_fn = make_model()
    tx, step = make_step(loss_fn)
    second = train(7, init, tx, step)
  return dict(first=first, second=second, other_seed=other_seed, other_masks=other_masks)


def test_same_seed_gives_bit_identical_training(runs):
  for a, b in zip(jax.tree.leaves(runs["first"]), jax.tree.leaves(runs["second"])):
    np.testing.assert_array_equal(a, b)  # bit for bit, not to a tolerance
  _, _, losses, norms = runs["first"]
  assert np.all(np.isfinite(losses)) and np.all(np.isfinite(norms))
  assert np.any(norms > 0.02), "clipping never acted; the test would not cover it"


def _differ_everywhere(a, b, what):
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    assert not np.array_equal(x, y), f"{jax.tree_util.keystr(path)} is the same for {what}"


def test_another_seed_gives_other_parameters(runs):
  _differ_everywhere(runs["first"][0], runs["other_seed"][0], "two seeds")


def test_dropout_is_active_and_follows_the_key(runs):
  """Same seed and data, other dropout keys: other parameters, so the bit-identical run
  above did run with dropout (between layers and recurrent) driven by the key."""
  _differ_everywhere(runs["first"][0], runs["other_masks"][0], "two dropout streams")
