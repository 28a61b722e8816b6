"""The Flax NNX adapter: same numbers and dropout masks as model.apply, trains in an NNX model."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import deeprnn_jax as drnn
from helpers import assert_trees_close


def test_import_needs_no_flax():
  code = ("import sys, deeprnn_jax; assert 'flax' not in sys.modules; "
          "deeprnn_jax.NNXStackedRNN; assert 'flax.nnx' in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)


@nnx.jit(static_argnames=("output", "deterministic"))
def run(layer, xs, lengths, initial_state=None, output="sequence", deterministic=None,
        rngs=None):
  return layer(xs, lengths, initial_state, output=output, deterministic=deterministic,
               rngs=rngs)


def numpy_params(params, seed=0):
  # NumPy draws in every leaf (biases included): an eager init compiles op by op
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape), a.dtype), params)


def test_params_and_outputs_are_the_stacks():
  layer = drnn.NNXStackedRNN("gru", 3, (4, 4, 2), dropout=0.3,
                             rngs=nnx.Rngs(params=0, dropout=1))
  model = layer.model
  # the params are model.init's, drawn with the next key of the "params" stream
  assert_trees_close(layer.get_params(), jax.jit(model.init)(nnx.Rngs(params=0).params()),
                     rtol=0, atol=0)
  layer.set_params(numpy_params(layer.get_params()))
  params = layer.get_params()
  xs = jax.random.normal(jax.random.key(0), (2, 5, 3))
  lengths = jnp.array([5, 2], jnp.int32)
  init = jax.tree.map(lambda a: a + 0.5, model.initial_state(2))
  apply = jax.jit(model.apply, static_argnames=("train", "output"))

  layer.eval()
  assert layer.deterministic
  for output in ("sequence", "last"):
    assert_trees_close(run(layer, xs, lengths, init, output=output),
                       apply(params, xs, lengths, init, output=output))

  # training: the masks of model.apply with the same key, whether the key is given...
  layer.train()
  key = jax.random.key(7)
  want = apply(params, xs, lengths, init, train=True, key=key)
  assert_trees_close(run(layer, xs, lengths, init, rngs=key), want)
  # ...or drawn from the "dropout" stream, which moves on at every call
  for _ in range(2):
    key = nnx.clone(layer).rngs()  # the key the next call will draw
    assert_trees_close(run(layer, xs, lengths, init),
                       apply(params, xs, lengths, init, train=True, key=key))
  assert float(jnp.abs(run(layer, xs, lengths)[0] - run(layer, xs, lengths)[0]).max()) > 1e-3
  eval_ys = apply(params, xs, lengths)[0]
  assert float(jnp.abs(run(layer, xs, lengths)[0] - eval_ys).max()) > 1e-3
  # nnx.view and a per-call `deterministic` turn it off, leaving the layer in training
  assert_trees_close(run(nnx.view(layer, deterministic=True), xs, lengths)[0], eval_ys)
  assert_trees_close(run(layer, xs, lengths, deterministic=True)[0], eval_ys)
  assert not layer.deterministic


class Classifier(nnx.Module):
  """nnx.Embed -> NNXStackedRNN (last valid output) -> nnx.Linear: an NNX model."""

  def __init__(self, vocab, features, hidden, *, rngs):
    self.embed = nnx.Embed(vocab, features, rngs=rngs)
    self.rnn = drnn.NNXStackedRNN("lstm", features, hidden, dropout=0.1, rngs=rngs)
    self.head = nnx.Linear(hidden[-1], 1, rngs=rngs)

  def __call__(self, tokens, lengths):
    last, _ = self.rnn(self.embed(tokens), lengths, output="last")  # [B, H]
    return self.head(last)[:, 0]  # [B]


def test_trains_in_an_nnx_model():
  net = Classifier(20, 8, (8, 8), rngs=nnx.Rngs(params=0, dropout=1))
  tokens = jax.random.randint(jax.random.key(0), (4, 6), 0, 20)
  lengths = jnp.array([6, 3, 1, 5], jnp.int32)
  labels = jnp.array([1.0, 0.0, 1.0, 0.0])
  optimizer = nnx.Optimizer(net, optax.adam(1e-2), wrt=nnx.Param)
  before = nnx.clone(nnx.state(net, nnx.Param))

  def loss_fn(net):
    return optax.sigmoid_binary_cross_entropy(net(tokens, lengths), labels).mean()

  @nnx.jit
  def train_step(net, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(net)
    optimizer.update(net, grads)
    return loss

  eval_loss = nnx.jit(loss_fn)
  net.eval()
  first = float(eval_loss(net))
  net.train()
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam: float ** int32
    losses = [float(train_step(net, optimizer)) for _ in range(20)]
  net.eval()
  last = float(eval_loss(net))
  # measured: 0.697 -> 0.56 after 10 steps; with a margin
  assert np.isfinite(losses).all() and last < 0.8 * first, (first, losses, last)
  # every Param (stack, embedding, head) moved
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(nnx.state(net, nnx.Param))):
    assert float(jnp.abs(new - old).max()) > 0
  # the trained stack's params are a drop-in for model.apply
  xs = net.embed.embedding[...][tokens]  # [B, T, F]
  last_h = jax.jit(net.rnn.model.apply, static_argnames="output")(
      net.rnn.get_params(), xs, lengths, output="last")[0]
  want = last_h @ net.head.kernel[...][:, 0] + net.head.bias[...][0]
  np.testing.assert_allclose(nnx.jit(lambda n: n(tokens, lengths))(net), want,
                             rtol=1e-5, atol=1e-5)


def test_params_round_trip_with_the_pure_params():
  layer = drnn.NNXStackedRNN("lstm", 3, (4, 4), bidirectional=True, rngs=nnx.Rngs(0))
  pure = drnn.stacked_rnn("lstm", 3, (4, 4), bidirectional=True)
  shapes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
  got = layer.get_params()
  assert isinstance(got, tuple) and shapes(got) == shapes(jax.eval_shape(pure.init,
                                                                         jax.random.key(0)))
  # the Params in nnx.state are those leaves, in that layout
  assert_trees_close(jax.tree.leaves(nnx.state(layer, nnx.Param)), jax.tree.leaves(got),
                     rtol=0, atol=0)
  params = numpy_params(got, seed=1)
  layer.set_params(params)
  assert_trees_close(layer.get_params(), params, rtol=0, atol=0)
  xs = jax.random.normal(jax.random.key(2), (2, 3, 3))
  assert_trees_close(run(layer, xs, None), jax.jit(pure.apply)(params, xs))

  half = drnn.NNXStackedRNN("lstm", 3, (4, 4), bidirectional=True, rngs=nnx.Rngs(0),
                            param_dtype=jnp.bfloat16)
  half.set_params(params)  # stored in the Params' own dtype
  assert {a.dtype for a in jax.tree.leaves(half.get_params())} == {jnp.dtype(jnp.bfloat16)}


def test_bad_inputs_name_the_argument():
  rngs = nnx.Rngs(0)
  with pytest.raises(TypeError, match="^rngs: expected an nnx.Rngs"):
    drnn.NNXStackedRNN("gru", 3, (4,), rngs=0)
  with pytest.raises(ValueError, match="^rngs: drawing the params needs a 'params'"):
    drnn.NNXStackedRNN("gru", 3, (4,), rngs=nnx.Rngs(dropout=1))
  with pytest.raises(ValueError, match="^rngs: a stack with dropout needs a 'dropout'"):
    drnn.NNXStackedRNN("gru", 3, (4, 4), dropout=0.5, rngs=nnx.Rngs(params=0))
  with pytest.raises(TypeError, match="^param_dtype: expected a floating dtype"):
    drnn.NNXStackedRNN("gru", 3, (4,), rngs=rngs, param_dtype=jnp.int32)
  with pytest.raises(TypeError, match="^deterministic: expected a bool"):
    drnn.NNXStackedRNN("gru", 3, (4,), rngs=rngs, deterministic="yes")
  with pytest.raises(ValueError, match="^hidden_sizes"):  # stacked_rnn's own checks
    drnn.NNXStackedRNN("gru", 3, (), rngs=rngs)
  with pytest.raises(ValueError, match="^dropout"):
    drnn.NNXStackedRNN("gru", 3, (4,), dropout=1.5, rngs=rngs)

  layer = drnn.NNXStackedRNN("gru", 3, (4, 4), dropout=0.5, rngs=rngs)
  xs = jnp.zeros((2, 5, 3), jnp.float32)
  with pytest.raises(ValueError, match="^xs: expected 3 features"):
    layer(jnp.zeros((2, 5, 4), jnp.float32))
  with pytest.raises(TypeError, match="^lengths: expected an integer dtype"):
    layer(xs, jnp.array([5.0, 2.0]))
  with pytest.raises(TypeError, match="^rngs: expected an nnx.Rngs, an nnx.RngStream"):
    layer(xs, rngs=3)
  with pytest.raises(TypeError, match="^rngs: expected a PRNG key"):
    layer(xs, rngs=jnp.zeros((3,), jnp.uint32))
  with pytest.raises(TypeError, match="^deterministic: expected a bool"):
    layer(xs, deterministic=0)
  with pytest.raises(ValueError, match="^params: expected the structure"):
    layer.set_params(layer.get_params()[:1])
  other = drnn.stacked_rnn("gru", 3, (5, 5)).init(jax.random.key(0))
  with pytest.raises(ValueError, match=r"^params\[0\]\['b'\]: expected shape"):
    layer.set_params(other)
  as_ints = jax.tree.map(lambda a: a.astype(jnp.int32), layer.get_params())
  with pytest.raises(TypeError, match=r"^params\[0\]\['b'\]: expected a floating dtype"):
    layer.set_params(as_ints)
