"""Gradient diagnostics: per-layer, per-step state-gradient norms against a Python-loop
reference, parameter norms against jax.grad through `apply`, clipping, and the vanishing
of gradients in a tanh RNN compared with an LSTM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.nn import initializers as jinit

import deeprnn_jax as drnn
from deeprnn_jax import diagnostics

# Test data comes from NumPy and jit-compiled functions: on a busy 2-core machine each
# eager jax op compiles once per shape, and dozens of those cost more than the tests.


def random_params(model, rng, scale=0.4):
  """Random values in every leaf (biases included), shaped as `model.init` would."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0)))
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), s.dtype), shapes)


def normal(rng, *shape):
  return jnp.asarray(rng.normal(size=shape), jnp.float32)


def reference_state_norms(model, params, xs, lengths, loss_fn):
  """[L, T] norms of dLoss/dh_t^l by jax.grad through plain Python loops of `cell.step`,
  with the perturbations eps[l][d][t] [B, H] as explicit inputs."""
  B, T, _ = xs.shape
  L = len(model.cells)
  directions = 2 if model.bidirectional else 1
  valid = np.arange(T)[:, None] < np.asarray(lengths)[None, :]  # [T, B]

  def loss_of(eps):
    h_in = [xs[:, t] for t in range(T)]
    for l, cell in enumerate(model.cells):
      p = drnn.layer_params(model, params, l)
      outs = []
      for d in range(directions):
        pd = p if directions == 1 else p[("fwd", "bwd")[d]]
        carry = cell.initial_carry(B)
        out = [None] * T
        for t in (range(T) if d == 0 else range(T - 1, -1, -1)):
          new, y = cell.step(pd, carry, h_in[t])
          h = y + eps[l][d][t]
          new = drnn.LSTMState(h, new.c) if cell.kind == "lstm" else h
          keep = jnp.asarray(valid[t])[:, None]  # past the length: frozen carry, zero output
          carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry)
          out[t] = jnp.where(keep, h, 0)
        outs.append(out)
      y = [jnp.concatenate([o[t] for o in outs], axis=-1) for t in range(T)]
      if model.residual and l > 0 and y[0].shape[-1] == h_in[0].shape[-1]:
        y = [a + b for a, b in zip(y, h_in)]
      h_in = y
    return loss_fn(jnp.stack(h_in, axis=1))  # [B, T, H]

  eps = [[[np.zeros((B, c.hidden_size), np.float32) for _ in range(T)] for _ in range(directions)]
         for c in model.cells]
  grads = jax.jit(jax.grad(loss_of))(eps)  # jit: one compile, not thousands of eager ops
  sq = np.array([[[np.sum(np.square(grads[l][d][t]), axis=-1) for t in range(T)]
                  for d in range(directions)] for l in range(L)])  # [L, D, T, B]
  per_row = np.sqrt(sq.sum(axis=1))  # [L, T, B]
  return (per_row * valid).sum(-1) / np.maximum(valid.sum(-1), 1)


@pytest.mark.parametrize("kind,widths,kw", [
    ("rnn", (5, 5, 7), {}),
    ("lstm", (5, 5, 7), {}),
    ("gru", (4, 4, 3), {"bidirectional": True, "residual": True}),
], ids=["rnn", "lstm", "gru-bidirectional-residual"])
def test_state_norms_equal_python_loop_reference(kind, widths, kw, rng):
  B, T, F = 3, 7, 4
  model = drnn.stacked_rnn(kind, F, widths, **kw)
  params = random_params(model, rng)
  xs = normal(rng, B, T, F)
  lengths = jnp.array([7, 3, 5], jnp.int32)
  w = normal(rng, B, T, (2 if model.bidirectional else 1) * widths[-1])
  loss_fn = lambda ys: jnp.sum(jnp.sin(ys) * w)  # every step, nonlinear

  # jit from outside, lengths and max_norm traced: the function must trace cleanly
  run = jax.jit(lambda p, x, n, m: diagnostics.state_gradient_norms(
      model, p, x, loss_fn, lengths=n, max_norm=m))
  got = run(params, xs, lengths, 0.5)

  want = reference_state_norms(model, params, xs, lengths, loss_fn)
  assert got.state.shape == (len(widths), T)
  np.testing.assert_allclose(got.state, want, rtol=2e-5, atol=1e-6)
  assert np.all(want[:, 5:] > 0)  # the shorter rows' padding did not zero the averages
  apply_loss = jax.jit(lambda p: loss_fn(model.apply(p, xs, lengths)[0]))
  np.testing.assert_allclose(got.loss, apply_loss(params), rtol=1e-5, atol=1e-6)


def test_param_norms_global_norm_and_clipping(rng):
  model = drnn.stacked_rnn("lstm", 3, (5, 7, 7, 7))
  assert model.groups == ((0, 1), (1, 1), (2, 2))  # mixed widths and a depth-scanned pair
  params = random_params(model, rng)
  xs = normal(rng, 2, 6, 3)
  loss_fn = lambda ys: jnp.sum(ys[:, -1] ** 2)

  grads = jax.jit(jax.grad(lambda p: loss_fn(model.apply(p, xs)[0])))(params)
  want = []  # by hand from the groups' stacked leaves, without layer_params
  for g, (first, count) in enumerate(model.groups):
    for i in range(count):
      want.append(np.sqrt(sum(np.sum(np.square(np.asarray(a[i], np.float64)))
                              for a in jax.tree.leaves(grads[g]))))
  global_norm = np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64)))
                            for a in jax.tree.leaves(grads)))

  np.testing.assert_allclose(diagnostics.param_gradient_norms(model, grads), want, rtol=1e-5)
  small = diagnostics.state_gradient_norms(model, params, xs, loss_fn,
                                           max_norm=float(global_norm) / 4)
  np.testing.assert_allclose(small.params, want, rtol=1e-5)
  np.testing.assert_allclose(small.global_norm, global_norm, rtol=1e-5)
  assert small.clipped_global_norm <= global_norm / 4 * (1 + 1e-6)  # optax's invariant
  np.testing.assert_allclose(small.clipped_global_norm, global_norm / 4, rtol=1e-5)
  large = diagnostics.state_gradient_norms(model, params, xs, loss_fn,
                                           max_norm=float(global_norm) * 2)
  np.testing.assert_allclose(large.clipped_global_norm, global_norm, rtol=1e-6)  # untouched


def _scaled_orthogonal(scale):
  orthogonal = jinit.orthogonal()
  return lambda key, shape, dtype=jnp.float32: scale * orthogonal(key, shape, dtype)


def test_tanh_rnn_gradients_vanish_and_lstm_gradients_vanish_much_less():
  B, T, F, H = 8, 16, 4, 16
  rng = np.random.default_rng(0)
  xs, v = normal(rng, B, T, F), normal(rng, H)
  loss_fn = lambda ys: jnp.sum(ys[:, -1] @ v)  # loss on the last step only
  ratios = {}
  for kind in ("rnn", "lstm"):  # the same small recurrent weights: orthogonal x 0.5
    model = drnn.stacked_rnn(kind, F, (H, H), recurrent_init=_scaled_orthogonal(0.5))
    params = jax.jit(model.init)(jax.random.key(0))
    result = diagnostics.state_gradient_norms(model, params, xs, loss_fn)
    assert result.clipped_global_norm is None  # no max_norm, no clipping
    s = np.asarray(result.state)
    # dLoss/dh_{T-1} of the top layer is v for every row: a closed form to anchor on
    np.testing.assert_allclose(s[-1, -1], np.linalg.norm(v), rtol=1e-5)
    ratios[kind] = s[-1, 0] / s[-1, -1]  # 15 steps away from the loss vs at the loss
    if kind == "rnn":
      assert np.all(np.diff(s[-1]) > 0), s[-1]  # smaller at every step further back
  # Measured over 8 seeds of params and data (seed 0 is this test; jax 0.10, CPU): tanh
  # RNN ratio 1.1e-6 to 3.2e-6 (about 0.42 per step back); LSTM 4.6e-3 to 1.1e-2 (about
  # 0.71 per step, near its forget gate sigmoid(1) = 0.73); LSTM/RNN 1.8e3 to 5.0e3.
  # The bounds leave 31x, 4.5x and 17x of margin.
  assert ratios["rnn"] < 1e-4, ratios
  assert ratios["lstm"] > 1e-3, ratios
  assert ratios["lstm"] / ratios["rnn"] > 100, ratios


def test_bad_inputs_get_clear_errors():
  model = drnn.stacked_rnn("rnn", 3, (4,))
  params = random_params(model, np.random.default_rng(0))
  xs = jnp.ones((2, 5, 3))
  loss_fn = lambda ys: ys.sum()
  with pytest.raises(TypeError, match="model: expected a StackedRNN"):
    diagnostics.state_gradient_norms(params, params, xs, loss_fn)
  with pytest.raises(TypeError, match="loss_fn: expected a callable"):
    diagnostics.state_gradient_norms(model, params, xs, 1.0)
  with pytest.raises(ValueError, match="loss_fn: expected a function returning a scalar"):
    diagnostics.state_gradient_norms(model, params, xs, lambda ys: ys.sum(-1))
  with pytest.raises(ValueError, match="max_norm: expected a positive number, got 0"):
    diagnostics.state_gradient_norms(model, params, xs, loss_fn, max_norm=0.0)
  with pytest.raises(ValueError, match="xs: expected 3 features"):
    diagnostics.state_gradient_norms(model, params, jnp.ones((2, 5, 4)), loss_fn)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bf16_diagnostics_measure_the_function_apply_computes(kind):
  """With compute_dtype=bf16 the diagnostics run the model's own precision policy
  (weights bf16, biases and state float32): their loss is apply's (the diagnostics before
  the redesign cast the biases to bf16 too, another function)."""
  model = drnn.stacked_rnn(kind, 3, (4, 4), compute_dtype=jnp.bfloat16, residual=True)
  params = model.init(jax.random.key(0))
  params = jax.tree.map(lambda a: a + 0.1, params)  # biases away from zero: visible in bf16
  xs = jax.random.normal(jax.random.key(1), (2, 6, 3))
  loss = lambda ys: jnp.sum(ys.astype(jnp.float32) ** 2)
  norms = drnn.diagnostics.state_gradient_norms(model, params, xs, loss,
                                                lengths=jnp.asarray([6, 3]))
  want = jax.jit(lambda p: loss(model.apply(p, xs, jnp.asarray([6, 3]))[0]))(params)
  np.testing.assert_allclose(np.asarray(norms.loss), np.asarray(want), rtol=1e-6)
