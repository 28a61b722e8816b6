"""The Flax linen adapter: same numbers as model.apply, and it trains inside a linen model."""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deeprnn_jax as drnn
from helpers import assert_trees_close


def test_import_needs_no_flax():
  code = ("import sys, deeprnn_jax; assert 'flax' not in sys.modules; "
          "deeprnn_jax.FlaxStackedRNN; assert 'flax' in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_adapter_params_and_outputs_are_the_stacks():
  model = drnn.stacked_rnn("gru", 3, (4, 4, 2), dropout=0.3)
  adapter = drnn.FlaxStackedRNN(model)
  xs = jax.random.normal(jax.random.key(0), (2, 5, 3))
  lengths = jnp.array([5, 2], jnp.int32)
  variables = jax.eval_shape(adapter.init, jax.random.key(1), xs, lengths)
  assert list(variables) == ["params"] and list(variables["params"]) == ["stack"]
  shapes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
  assert shapes(variables["params"]["stack"]) == shapes(jax.eval_shape(model.init,
                                                                       jax.random.key(0)))

  rng = np.random.default_rng(0)  # NumPy draws: an eager model.init compiles op by op
  params = jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape), a.dtype),
                        variables["params"]["stack"])
  init = jax.tree.map(lambda a: a + 0.5, model.initial_state(2))
  run = jax.jit(adapter.apply, static_argnames="train")
  got = run({"params": {"stack": params}}, xs, lengths, init)
  assert_trees_close(got, jax.jit(model.apply)(params, xs, lengths, init))

  # training: dropout masks from the "dropout" stream, reproducible, and different per key
  train = lambda k: run({"params": {"stack": params}}, xs, lengths, train=True,
                        rngs={"dropout": jax.random.key(k)})[0]
  np.testing.assert_array_equal(train(3), train(3))
  assert float(jnp.abs(train(3) - train(4)).max()) > 1e-3
  assert float(jnp.abs(train(3) - got[0]).max()) > 1e-3
  with pytest.raises(ValueError, match="needs a PRNG key"):  # no stream: the stack says so
    adapter.apply({"params": {"stack": params}}, xs, lengths, train=True)


class Classifier(nn.Module):
  """nn.Embed -> the adapter (last valid output) -> nn.Dense: a linen model around a stack."""

  vocab: int
  model: drnn.StackedRNN

  @nn.compact
  def __call__(self, tokens, lengths, train=False):
    xs = nn.Embed(self.vocab, self.model.input_size)(tokens)  # [B, T, F]
    last, _ = drnn.FlaxStackedRNN(self.model)(xs, lengths, train=train, output="last")
    return nn.Dense(1)(last)[:, 0]  # [B]


def test_adapter_composes_and_trains_in_a_linen_model():
  model = drnn.stacked_rnn("lstm", 8, (8, 8), dropout=0.1)
  net = Classifier(vocab=20, model=model)
  tokens = jax.random.randint(jax.random.key(0), (4, 6), 0, 20)
  lengths = jnp.array([6, 3, 1, 5], jnp.int32)
  labels = jnp.array([1.0, 0.0, 1.0, 0.0])
  shapes = jax.eval_shape(net.init, jax.random.key(1), tokens, lengths)["params"]
  rng = np.random.default_rng(0)  # NumPy draws: compiling net.init costs more than the test
  params = jax.tree.map(lambda a: jnp.asarray(0.3 * rng.normal(size=a.shape), a.dtype), shapes)
  assert set(params) == {"Embed_0", "FlaxStackedRNN_0", "Dense_0"}
  tx = optax.sgd(0.1)  # (optax.adam's jitted bias correction breaks strict promotion)

  @jax.jit
  def train_step(params, opt_state, key):
    def loss_fn(p):
      logits = net.apply({"params": p}, tokens, lengths, train=True, rngs={"dropout": key})
      return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, grads

  new_params, _, loss, grads = train_step(params, tx.init(params), jax.random.key(2))
  assert np.isfinite(float(loss))
  # every leaf (stack, embedding table, head) got a gradient and moved
  for g, old, new in zip(jax.tree.leaves(grads), jax.tree.leaves(params),
                         jax.tree.leaves(new_params)):
    assert float(jnp.abs(g).max()) > 0 and float(jnp.abs(new - old).max()) > 0
  # the stack's params inside the linen model are a drop-in for model.apply
  stack = new_params["FlaxStackedRNN_0"]["stack"]
  xs = new_params["Embed_0"]["embedding"][tokens]  # [B, T, F]
  last = jax.jit(model.apply, static_argnames="output")(stack, xs, lengths, output="last")[0]
  want = last @ new_params["Dense_0"]["kernel"][:, 0] + new_params["Dense_0"]["bias"][0]
  np.testing.assert_allclose(jax.jit(net.apply)({"params": new_params}, tokens, lengths),
                             want, rtol=1e-5, atol=1e-5)
