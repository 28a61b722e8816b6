"""Core properties of the stacked model: scan == loop, depth scan == per-layer loop,
padding, gradients, jit, compilation, dtypes, dropout placement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import deeprnn_jax as drnn
from helpers import assert_trees_close, randomize

KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]
IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]


def make(kind, nonlinearity, F, widths, seed=0, **kw):
  model = drnn.stacked_rnn(kind, F, widths, nonlinearity=nonlinearity, **kw)
  params = randomize(model.init(jax.random.key(seed)), jax.random.key(seed + 1), 0.4)
  return model, params


def data(B, T, F, seed=0):
  return jax.random.normal(jax.random.key(100 + seed), (B, T, F))


@pytest.mark.parametrize("kind,nl", KINDS, ids=IDS)
@pytest.mark.parametrize("widths", [(6, 6, 6, 6), (3, 2), (4, 6, 6, 3, 3)])
def test_scan_equals_python_loop(kind, nl, widths):
  model, params = make(kind, nl, 4, widths)
  xs = data(3, 9, 4)
  lengths = jnp.array([9, 0, 4], jnp.int32)
  init = jax.tree.map(lambda a: a + 0.3, model.initial_state(3))
  got = model.apply(params, xs, lengths, initial_state=init)
  want = model.apply_reference(params, xs, lengths, initial_state=init)
  assert_trees_close(got, want)


def test_equal_layers_share_one_depth_scanned_group():
  model = drnn.stacked_rnn("lstm", input_size=32, hidden_sizes=(64,) * 5 + (16, 16))
  assert model.groups == ((0, 1), (1, 4), (5, 1), (6, 1))
  params = model.init(jax.random.key(0))
  assert params[1]["w_hh"].shape == (4, 64, 256)  # four layers stacked on a leading axis
  for l in range(7):  # each layer's slice is what a per-layer init would give
    p = drnn.layer_params(model, params, l)
    assert p["w_ih"].shape == ((32, 64, 64, 64, 64, 64, 16)[l], 4 * model.hidden_sizes[l])


def numpy_seed_stack(params_per_layer, xs, act):
  """The seed equation H_t^l = act(W^l H_{t-1}^l + U^l H_t^{l-1} + b^l), in plain NumPy."""
  h_in = np.asarray(xs, np.float64)  # [B, T, F]
  for p in params_per_layer:
    U, W, b = (np.asarray(p[k], np.float64) for k in ("w_ih", "w_hh", "b"))
    h = np.zeros((xs.shape[0], W.shape[0]))
    out = []
    for t in range(xs.shape[1]):
      h = act(h_in[:, t] @ U + h @ W + b)
      out.append(h)
    h_in = np.stack(out, axis=1)
  return h_in


@pytest.mark.parametrize("nl,act", [("tanh", np.tanh), ("relu", lambda v: np.maximum(v, 0))])
def test_seed_equation_in_numpy(nl, act):
  model, params = make("rnn", nl, 3, (3, 2))
  xs = data(2, 8, 3)
  ys, _ = model.apply(params, xs)
  per_layer = [drnn.layer_params(model, params, l) for l in range(2)]
  np.testing.assert_allclose(ys, numpy_seed_stack(per_layer, np.asarray(xs), act),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,nl", KINDS, ids=IDS)
def test_padding_changes_nothing(kind, nl):
  model, params = make(kind, nl, 3, (5, 5, 4))
  xs = data(4, 10, 3)
  lengths = jnp.array([10, 3, 0, 7], jnp.int32)
  pad = jnp.arange(10)[None, :, None] >= lengths[:, None, None]  # [B, T, 1]
  noisy = jnp.where(pad, 1e3 * data(4, 10, 3, seed=1), xs)
  ys, state = model.apply(params, xs, lengths)
  ys2, state2 = model.apply(params, noisy, lengths)
  assert_trees_close((ys, state), (ys2, state2), rtol=0, atol=0)
  assert float(jnp.abs(jnp.where(pad, ys, 0)).max()) == 0.0  # padded outputs are zero
  # the final state is the state at the last valid step: run each sequence cut to length
  for b, n in enumerate([10, 3, 7]):
    row = (0, 1, 3)[b]
    _, cut_state = model.apply(params, xs[row:row + 1, :n])
    assert_trees_close(jax.tree.map(lambda a: a[row:row + 1], state), cut_state)
  zero_len = jax.tree.map(lambda a: a[2], state)  # length 0: the initial (zero) state
  assert all(float(jnp.abs(a).max()) == 0 for a in jax.tree.leaves(zero_len))


@pytest.mark.parametrize("kind,nl", KINDS, ids=IDS)
def test_check_grads(kind, nl):
  with jax.enable_x64(True):
    model = drnn.stacked_rnn(kind, 2, (3, 3, 2), nonlinearity=nl)
    params = randomize(model.init(jax.random.key(0), dtype=jnp.float64),
                       jax.random.key(1), 0.5)
    xs = jax.random.normal(jax.random.key(2), (2, 4, 2), jnp.float64)
    lengths = jnp.array([4, 2], jnp.int32)

    def loss(params, xs):
      ys, state = model.apply(params, xs, lengths)
      return jnp.sum(ys ** 2) + sum(jnp.sum(a) for a in jax.tree.leaves(state))

    check_grads(jax.jit(loss), (params, xs), order=1, modes=["rev"], eps=1e-4, atol=1e-4,
                rtol=1e-4)


@pytest.mark.parametrize("kind,nl", KINDS, ids=IDS)
def test_jit_equals_no_jit(kind, nl):
  model, params = make(kind, nl, 3, (4, 4, 2))
  xs, lengths = data(2, 6, 3), jnp.array([6, 3], jnp.int32)
  assert_trees_close(jax.jit(model.apply)(params, xs, lengths), model.apply(params, xs, lengths))


def test_no_recompilation_on_second_call():
  model, params = make("lstm", None, 3, (4, 4, 4))

  @jax.jit
  def loss_and_grad(params, xs, lengths):
    return jax.value_and_grad(lambda p: jnp.sum(model.apply(p, xs, lengths)[0]))(params)

  loss_and_grad(params, data(2, 5, 3), jnp.array([5, 2], jnp.int32))
  loss_and_grad(params, data(2, 5, 3, seed=1), jnp.array([1, 4], jnp.int32))
  assert loss_and_grad._cache_size() == 1
  loss_and_grad(params, data(2, 6, 3), jnp.array([6, 4], jnp.int32))  # a new shape compiles
  assert loss_and_grad._cache_size() == 2


def test_depth_scan_keeps_the_program_flat():
  """A 16-layer stack lowers to (about) the same program as a 3-layer one: one layer body."""
  def hlo_lines(L):
    model = drnn.stacked_rnn("lstm", 8, (16,) * L)
    params = model.init(jax.random.key(0))
    f = jax.jit(jax.grad(lambda p, x: jnp.sum(model.apply(p, x)[0])))
    return len(f.lower(params, jnp.ones((2, 5, 8))).as_text().splitlines())

  three, sixteen = hlo_lines(3), hlo_lines(16)
  # One layer body, and the zero initial states are made per group at their stacked
  # shape, so 13 more layers add nothing (measured: 489 lines both); unrolled layer
  # bodies, or per-layer bookkeeping, would grow the program with depth.
  assert sixteen <= three + 8, (three, sixteen)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_dtype_kept(kind, dtype):
  with jax.enable_x64(True):
    model = drnn.stacked_rnn(kind, 3, (4, 2))
    params = model.init(jax.random.key(0), dtype=dtype)
    ys, state = model.apply(params, jnp.ones((2, 5, 3), dtype))
    assert ys.dtype == dtype
    assert all(a.dtype == dtype for a in jax.tree.leaves((params, state)))


def test_dropout_only_between_layers_and_only_in_training():
  model, params = make("gru", None, 3, (4, 4, 4), dropout=0.5)
  apply = jax.jit(model.apply, static_argnames="train")
  xs = data(2, 6, 3)
  plain, _ = apply(params, xs)
  a, _ = apply(params, xs, train=True, key=jax.random.key(7))
  b, _ = apply(params, xs, train=True, key=jax.random.key(7))
  c, _ = apply(params, xs, train=True, key=jax.random.key(8))
  assert_trees_close(a, b, rtol=0, atol=0)  # deterministic given the key
  assert not np.allclose(a, plain) and not np.allclose(a, c)
  assert_trees_close(apply(params, xs, key=jax.random.key(7))[0], plain)  # eval: off
  # never after the last layer, nor on the input: a single layer is untouched by dropout
  one, p1 = make("gru", None, 3, (4,), dropout=0.5)
  assert_trees_close(one.apply(p1, xs, train=True, key=jax.random.key(7))[0], one.apply(p1, xs)[0])


@pytest.mark.parametrize("kind,nl", KINDS, ids=IDS)
def test_step_by_step_equals_apply(kind, nl):
  model, params = make(kind, nl, 3, (4, 4, 2))
  xs = data(2, 6, 3)
  ys, final = model.apply(params, xs)
  state, outs = model.initial_state(2), []
  for t in range(6):
    state, y = model.step(params, state, xs[:, t])
    outs.append(y)
  assert_trees_close((jnp.stack(outs, 1), state), (ys, final))


def test_count_params():
  model = drnn.stacked_rnn("lstm", 32, (5, 5))  # the seed's Keras LSTM(5), LSTM(5)
  params = model.init(jax.random.key(0))
  assert drnn.count_params(params) == (32 * 20 + 5 * 20 + 20) + (5 * 20 + 5 * 20 + 20)
  gru = drnn.stacked_rnn("gru", 3, (2,))
  assert drnn.count_params(gru.init(jax.random.key(0))) == 3 * 6 + 2 * 6 + 6 + 2


def test_initializers_selectable_and_forget_bias():
  model = drnn.stacked_rnn("lstm", 4, (8,), forget_bias=2.0, recurrent_init="glorot_normal",
                           bias_init="zeros")
  p = drnn.layer_params(model, model.init(jax.random.key(0)), 0)
  np.testing.assert_array_equal(p["b"][8:16], 2.0)  # forget block only
  np.testing.assert_array_equal(p["b"][:8], 0.0)
  orth = drnn.layer_params(drnn.stacked_rnn("lstm", 4, (8,)),
                           drnn.stacked_rnn("lstm", 4, (8,)).init(jax.random.key(0)), 0)
  block = orth["w_hh"][:, :8]  # default: each gate's recurrent block is orthogonal
  np.testing.assert_allclose(block.T @ block, np.eye(8), atol=1e-5)
  assert not np.allclose(p["w_hh"][:, :8].T @ p["w_hh"][:, :8], np.eye(8), atol=1e-2)
