"""Truncated BPTT: the chunked forward equals one whole pass; its gradient equals a Python
reference that stop-gradients the state at every chunk boundary; per-chunk training equals
hand-written per-chunk SGD updates."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import deeprnn_jax as drnn
import np_random
from helpers import assert_trees_close


def make(kind, F, widths, **kw):
  model = drnn.stacked_rnn(kind, F, widths, **kw)
  return model, np_random.params(model)


def reference_chunks(model, params, xs, K, lengths):
  """The definition, by hand: a Python loop over chunks, the state's gradient cut at each."""
  B, T, _ = xs.shape
  state, outs = model.initial_state(B), []
  for start in range(0, T, K):
    chunk_lengths = jnp.clip(lengths - start, 0, K)
    ys, state = model.apply(params, xs[:, start:start + K], chunk_lengths,
                            lax.stop_gradient(state))
    outs.append(ys)
  return jnp.concatenate(outs, axis=1), state


def test_forward_equals_whole_sequence_and_gradient_is_truncated():
  model, params = make("lstm", 3, (4, 4))
  xs = np_random.normal((3, 10, 3), 2)
  lengths = jnp.array([10, 6, 3], jnp.int32)
  K = 4  # 10 steps: chunks of 4, 4 and a padded 2
  w = np_random.normal((3, 10, 4), 3)

  def loss(run):
    def f(params, xs):
      ys, state = run(params, xs)
      return jnp.sum(w * ys) + sum(jnp.sum(a) for a in jax.tree.leaves(state)), (ys, state)

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

  tbptt = lambda p, x: drnn.tbptt_apply(model, p, x, K, lengths)
  (_, got), grads = loss(tbptt)(params, xs)
  (_, want), want_grads = loss(lambda p, x: reference_chunks(model, p, x, K, lengths))(params, xs)
  assert_trees_close(got, jax.jit(model.apply)(params, xs, lengths))  # forward: one pass
  assert_trees_close(got, want)
  assert_trees_close(grads, want_grads)  # gradient: the state cut at every boundary
  # no gradient crosses a boundary: the outputs of chunk 2 do not depend on xs of chunk 1
  late = jax.jit(jax.grad(lambda x: jnp.sum(tbptt(params, x)[0][:, K:])))(xs)
  assert float(np.abs(late[:, :K]).max()) == 0.0 and float(np.abs(late[:, K:]).max()) > 0


def test_variational_masks_span_the_chunks():
  """With per-sequence masks only, every chunk sees the masks of one whole-sequence pass."""
  model, params = make("lstm", 3, (4, 4), dropout=0.3, variational=True, recurrent_dropout=0.3)
  xs, key = np_random.normal((2, 9, 3), 2), jax.random.key(5)
  got = jax.jit(lambda p, x, k: drnn.tbptt_apply(model, p, x, 3, train=True, key=k))(
      params, xs, key)
  assert_trees_close(got, jax.jit(lambda p, x, k: model.apply(p, x, train=True, key=k))(
      params, xs, key))
  listed = [jax.tree.map(lambda a: a + 0.5, list(c)) for c in model.initial_state(2)]
  assert_trees_close(drnn.tbptt_apply(model, params, xs, 4, initial_state=listed),
                     jax.jit(model.apply)(params, xs, initial_state=listed))
  with pytest.raises(ValueError, match="chunk_size: expected a positive int"):
    drnn.tbptt_apply(model, params, xs, 0)
  bi, bi_params = make("gru", 3, (4,), bidirectional=True)
  with pytest.raises(ValueError, match="needs a causal model"):
    drnn.tbptt_apply(bi, bi_params, xs, 3)


def test_train_makes_one_update_per_chunk():
  model, rnn_params = make("gru", 3, (4, 4))
  params = {"rnn": rnn_params, "head": jnp.full((4,), 0.1)}
  xs, targets = np_random.normal((2, 7, 3), 2), np_random.normal((2, 7), 3)
  lengths = jnp.array([7, 5], jnp.int32)
  K, lr = 3, 0.1

  def loss_fn(params, state, x, y, lens, key):
    ys, state = model.apply(params["rnn"], x, lens, state)
    valid = jnp.arange(x.shape[1])[None, :] < lens[:, None]  # [B, K]
    err = jnp.where(valid, ys @ params["head"] - y, 0.0)
    return jnp.sum(err ** 2) / jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32), state

  opt = optax.sgd(lr)
  train = jax.jit(lambda p, s: drnn.tbptt_train(loss_fn, opt, p, opt.init(p), s, xs, targets,
                                                K, lengths))
  got_params, _, got_state, losses = train(params, model.initial_state(2))

  p, state, want_losses = params, model.initial_state(2), []  # by hand, chunk by chunk
  chunk_grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  for start in range(0, 7, K):
    x, y = xs[:, start:start + K], targets[:, start:start + K]
    lens = jnp.clip(lengths - start, 0, x.shape[1])
    (value, new_state), grads = chunk_grad(p, state, x, y, lens, None)
    p = jax.tree.map(lambda a, g: a - lr * g, p, grads)
    state = new_state
    want_losses.append(value)
  assert losses.shape == (3,)
  assert_trees_close((got_params, got_state, losses), (p, state, jnp.stack(want_losses)))
