"""Stack-level features against independent references: output selection, residual
connections, layer-norm wiring, variational and recurrent dropout (NumPy loops with the
documented masks), streaming `step`, and the compute dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
import np_random
from helpers import assert_trees_close, documented_keep, documented_rate


def make(kind, F, widths, seed=0, **kw):
  model = drnn.stacked_rnn(kind, F, widths, **kw)
  return model, np_random.params(model, seed)


def data(B, T, F, seed=0):
  return np_random.normal((B, T, F), 100 + seed)


def one_layer(model, params, l, xs, lengths=None, **kw):
  """Layer l of `model` run alone, as a one-layer stack (trusted by the parity tests)."""
  F = xs.shape[-1]
  single = drnn.stacked_rnn(model.cells[l].kind, F, (model.hidden_sizes[l],), **kw)
  stacked = jax.tree.map(lambda a: a[None], drnn.layer_params(model, params, l))  # [1, ...]
  return jax.jit(single.apply)((stacked,), xs, lengths)


def jitted(model):
  return jax.jit(model.apply, static_argnames=("output", "train"))


def top_h(carry):
  return carry.h if isinstance(carry, drnn.LSTMState) else carry


# ----------------------------------------------------------------------------- outputs


def test_output_last_is_each_sequence_last_valid_step():
  model, params = make("lstm", 3, (4, 5))
  xs, lengths = data(4, 6, 3), jnp.array([6, 1, 3, 0], jnp.int32)
  run = jitted(model)
  seq, state = run(params, xs, lengths)
  last, state2 = run(params, xs, lengths, output="last")
  want = np.stack([np.asarray(seq)[b, max(n - 1, 0)] for b, n in enumerate([6, 1, 3, 0])])
  assert last.shape == (4, 5)
  np.testing.assert_array_equal(last, want)
  np.testing.assert_allclose(last, top_h(state[-1]), rtol=1e-6, atol=1e-6)  # the final h
  assert_trees_close(state, state2, rtol=0, atol=0)
  no_lengths, _ = run(params, xs, output="last")
  np.testing.assert_allclose(no_lengths, run(params, xs)[0][:, -1], rtol=1e-6)


def test_output_all_is_every_layer_sequence():
  model, params = make("rnn", 3, (4, 4, 2))
  xs, lengths = data(2, 5, 3), jnp.array([5, 3], jnp.int32)
  run = jitted(model)
  every, _ = run(params, xs, lengths, output="all")
  assert [y.shape for y in every] == [(2, 5, 4), (2, 5, 4), (2, 5, 2)]
  h = xs
  for l in range(3):  # each layer's sequence is that layer run alone on the one below
    h, _ = one_layer(model, params, l, h, lengths)
    np.testing.assert_allclose(every[l], h, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(every[-1], run(params, xs, lengths)[0])
  assert_trees_close(every, model.apply_reference(params, xs, lengths, output="all")[0])
  with pytest.raises(ValueError, match="output: expected one of"):
    model.apply(params, xs, output="final")


# ---------------------------------------------------------------------------- residual


def test_residual_adds_the_input_where_widths_match():
  F = 4  # as wide as layer 0, which still gets no residual: it starts at layer 1
  model, params = make("lstm", F, (4, 4, 6, 6), residual=True)
  xs, lengths = data(3, 6, F), jnp.array([6, 2, 4], jnp.int32)
  h = xs
  for l in range(4):  # from layer 1 on where the widths match (not 4 -> 6): y_l = f_l + y_{l-1}
    y, _ = one_layer(model, params, l, h, lengths)
    h = y + h if l > 0 and y.shape[-1] == h.shape[-1] else y
  ys, state = jitted(model)(params, xs, lengths)
  np.testing.assert_allclose(ys, h, rtol=1e-5, atol=1e-5)
  assert_trees_close((ys, state), model.apply_reference(params, xs, lengths))
  assert float(jnp.abs(ys[1, 2:]).max()) == 0.0  # padding stays zero


# -------------------------------------------------------------------------- layer norm


@pytest.mark.parametrize("kind", ["lstm"])
def test_layer_norm_stack_is_a_stack_of_layer_norm_cells(kind):
  model, params = make(kind, 3, (4, 4), layer_norm=True)
  assert "ln_hh_scale" in params[0] and all(c.layer_norm for c in model.cells)
  xs = data(2, 5, 3)
  cell = {"lstm": drnn.lstm, "gru": drnn.gru}[kind](4, layer_norm=True)
  h = xs
  for l in range(2):  # the cells' own step, looped by hand
    p, carry, outs = drnn.layer_params(model, params, l), cell.initial_carry(2), []
    for t in range(5):
      carry, y = cell.step(p, carry, h[:, t])
      outs.append(y)
    h = jnp.stack(outs, 1)
  np.testing.assert_allclose(jitted(model)(params, xs)[0], h, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="layer_norm"):
    drnn.stacked_rnn("rnn", 3, (4,), layer_norm=True)


# ----------------------------------------------------------------------------- dropout


def sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def numpy_layer(kind, p, xs, mask):
  """One layer in float64 with the recurrence reading (h * mask) @ w_hh; xs [B, T, F].
  The GRU's interpolation z * h reads the unmasked h (Keras' recurrent_dropout)."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  B, T, _ = xs.shape
  H = p["w_hh"].shape[0]
  h, c, ys = np.zeros((B, H)), np.zeros((B, H)), []
  for t in range(T):
    hp = (h * mask) @ p["w_hh"]
    if kind == "lstm":
      i, f, g, o = np.split(xs[:, t] @ p["w_ih"] + p["b"] + hp, 4, axis=-1)
      c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
      h = sigmoid(o) * np.tanh(c)
    else:
      xr, xz, xn = np.split(xs[:, t] @ p["w_ih"] + p["b"], 3, axis=-1)
      hr, hz, hn = np.split(hp, 3, axis=-1)
      r, z = sigmoid(xr + hr), sigmoid(xz + hz)
      h = (1 - z) * np.tanh(xn + r * (hn + p["b_hn"])) + z * h
    ys.append(h)
  return np.stack(ys, 1)


def documented_mask(key, rate, shape):
  """The masks stacked_rnn documents: 0 with probability `rate`, else 1 / (1 - rate)."""
  return documented_keep(key, rate, shape).astype(np.float64) / (1.0 - documented_rate(rate))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_variational_and_recurrent_dropout_match_numpy(kind):
  B, T, F, H, rate, rec = 3, 6, 2, 4, 0.5, 0.4
  model, params = make(kind, F, (H, H), dropout=rate, variational=True, recurrent_dropout=rec)
  xs, key = data(B, T, F), jax.random.key(7)
  ys, _ = jitted(model)(params, xs, train=True, key=key)

  keys = jax.random.split(key, 2)  # layer l: keys[l]; its recurrent mask: fold_in(keys[l], 1)
  h = np.asarray(xs, np.float64)
  for l in range(2):
    if l > 0:  # one input mask per sequence [B, F], the same at every step
      h = h * documented_mask(keys[l], rate, (B, H))[:, None, :]
    mask = documented_mask(jax.random.fold_in(keys[l], 1), rec, (B, H))
    h = numpy_layer(kind, drnn.layer_params(model, params, l), h, mask)
  np.testing.assert_allclose(ys, h, rtol=1e-5, atol=1e-5)
  assert_trees_close(model.apply_reference(params, xs, train=True, key=key)[0], ys)


@pytest.mark.parametrize("kind,bidirectional", [("lstm", True), ("gru", False)])
def test_dropout_deterministic_given_key_and_off_in_eval(kind, bidirectional):
  model, params = make(kind, 3, (4, 4), dropout=0.3, recurrent_dropout=0.3,
                       bidirectional=bidirectional)
  plain_model = drnn.stacked_rnn(kind, 3, (4, 4), bidirectional=bidirectional)
  xs, lengths = data(2, 5, 3), jnp.array([5, 2], jnp.int32)
  run = jitted(model)
  a = run(params, xs, lengths, train=True, key=jax.random.key(1))
  assert_trees_close(a, run(params, xs, lengths, train=True, key=jax.random.key(1)),
                     rtol=0, atol=0)
  b = run(params, xs, lengths, train=True, key=jax.random.key(2))
  assert not np.allclose(a[0], b[0])
  off = run(params, xs, lengths, key=jax.random.key(1))  # train=False
  assert_trees_close(off, jitted(plain_model)(params, xs, lengths), rtol=0, atol=0)
  assert not np.allclose(a[0], off[0])
  assert_trees_close(a, model.apply_reference(params, xs, lengths, train=True,
                                              key=jax.random.key(1)))
  with pytest.raises(ValueError, match="key: dropout, recurrent_dropout or zoneout"):
    model.apply(params, xs, train=True)
  with pytest.raises(ValueError, match=r"recurrent_dropout: expected a rate in \[0, 1\)"):
    drnn.stacked_rnn(kind, 3, (4,), recurrent_dropout=1.0)


# --------------------------------------------------------------------------- streaming


STREAM_CASES = {
    "gru-layer-norm-residual": ("gru", dict(layer_norm=True, residual=True)),
    "rnn-dropout-model": ("rnn", dict(dropout=0.5, recurrent_dropout=0.5, variational=True)),
    "lstm-bf16": ("lstm", dict(compute_dtype=jnp.bfloat16)),
}


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_step_by_step_equals_apply(case):
  kind, options = STREAM_CASES[case]
  model, params = make(kind, 3, (4, 4, 4), **options)
  xs = data(2, 6, 3)
  ys, final = jitted(model)(params, xs)
  state, outs = model.initial_state(2), []
  step = jax.jit(model.step)
  for t in range(6):
    state, y = step(params, state, xs[:, t])
    outs.append(y)
  tol = 1e-2 if "bf16" in case else 1e-5
  assert_trees_close((jnp.stack(outs, 1), state), (ys, final), rtol=tol, atol=tol)
  assert jnp.stack(outs, 1).dtype == ys.dtype
  with pytest.raises(ValueError, match=r"x_t: expected an array \[batch, 3\]"):
    model.step(params, state, xs)


# ---------------------------------------------------------------------- mixed precision


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("kind", ["lstm"])
def test_bf16_compute_is_close_to_float32(kind):
  f32, params = make(kind, 4, (16, 16), seed=3)
  bf16 = drnn.stacked_rnn(kind, 4, (16, 16), compute_dtype=jnp.bfloat16)
  xs, lengths = data(4, 10, 4), jnp.array([10, 7, 3, 1], jnp.int32)
  ys32, state32 = jitted(f32)(params, xs, lengths)
  ys16, state16 = jitted(bf16)(params, xs, lengths)
  assert ys16.dtype == jnp.bfloat16  # outputs in the compute dtype
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(state16))  # state in float32
  assert rel_err(ys16, ys32) < 1e-2
  assert rel_err(jnp.concatenate([a.ravel() for a in jax.tree.leaves(state16)]),
                 jnp.concatenate([a.ravel() for a in jax.tree.leaves(state32)])) < 1e-2

  def loss(model, p):
    return jnp.sum(jnp.square(model.apply(p, xs, lengths)[0].astype(jnp.float32)))

  g32 = jax.jit(jax.grad(lambda p: loss(f32, p)))(params)
  g16 = jax.jit(jax.grad(lambda p: loss(bf16, p)))(params)
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(g16))  # float32 params, grads
  flat = lambda g: jnp.concatenate([a.ravel() for a in jax.tree.leaves(g)])
  assert rel_err(flat(g16), flat(g32)) < 3e-2
  assert_trees_close(bf16.apply_reference(params, xs, lengths), (ys16, state16),
                     rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bf16_keeps_the_state_in_float32_over_long_sequences(kind):
  """Issue 5's bf16 target at a reduced size: bf16 matmuls accumulated in float32, gates
  and cell state in float32, so 200 steps of 4 layers stay within 1e-2 of float32.
  Measured here: LSTM 6.8e-3, GRU 5.1e-3 (with every step's maths in bf16, the policy
  before: 1.5e-2 and 9.0e-3); at H=256, L=4, T=256: 7.6e-3 and 5.0e-3."""
  f32 = drnn.stacked_rnn(kind, 32, (64,) * 4)
  params = f32.init(jax.random.key(5))  # the default initialisers: a stable recurrence
  bf16 = drnn.stacked_rnn(kind, 32, (64,) * 4, compute_dtype=jnp.bfloat16)
  xs = data(4, 200, 32, seed=5)
  ys32, state32 = jitted(f32)(params, xs)
  ys16, state16 = jitted(bf16)(params, xs)
  assert rel_err(ys16.astype(jnp.float32), ys32) < 1e-2
  flat = lambda s: jnp.concatenate([a.ravel() for a in jax.tree.leaves(s)])
  assert rel_err(flat(state16), flat(state32)) < 1e-2


def test_dtype_rules():
  model, params = make("gru", 3, (4, 4))  # float32 params, no compute dtype
  xs = data(2, 5, 3)
  ys, state = model.apply(params, xs.astype(jnp.bfloat16))  # maths in the dtype of xs
  assert ys.dtype == jnp.bfloat16 and state[0].dtype == jnp.float32
  half = model.initial_state(2, jnp.bfloat16)  # a state given in bf16 stays bf16
  assert model.apply(params, xs.astype(jnp.bfloat16), initial_state=half)[1][1].dtype == \
      jnp.bfloat16
  assert model.apply(params, xs)[0].dtype == jnp.float32
  with pytest.raises(ValueError, match="compute_dtype: expected a floating dtype"):
    drnn.stacked_rnn("gru", 3, (4,), compute_dtype=jnp.int32)
  with pytest.raises(TypeError, match="residual: expected True or False"):
    drnn.stacked_rnn("gru", 3, (4,), residual=1)
