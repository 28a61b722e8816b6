"""A cell written outside the package (a peephole LSTM) gets every stack feature.

Gers & Schmidhuber 2000, peephole connections: the gates also read the cell state,
    i = sigmoid(x W_i + h U_i + p_i * c_{t-1} + b_i),  f likewise with p_f,
    c_t = f * c_{t-1} + i * tanh(x W_g + h U_g + b_g),
    o = sigmoid(x W_o + h U_o + p_o * c_t + b_o),   h_t = o * tanh(c_t).
Nothing in deeprnn_jax knows this cell: it comes in as `stacked_rnn(peephole_lstm, ...)`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from helpers import assert_trees_close, randomize


def peephole_lstm(hidden_size):
  """The cell as a user would write it, from the public `drnn.Cell` and `LSTMState`."""
  H = hidden_size

  def init(key, input_size, dtype=jnp.float32):
    k1, k2 = jax.random.split(key)
    return {"w_ih": jax.nn.initializers.glorot_uniform()(k1, (input_size, 4 * H), dtype),
            "w_hh": jax.nn.initializers.orthogonal()(k2, (H, 4 * H), dtype),
            "b": jnp.zeros((4 * H,), dtype), "peep": jnp.zeros((3, H), dtype)}

  def project(params, x):
    return x @ params["w_ih"] + params["b"]

  def recur(params, carry, xp):
    i, f, g, o = jnp.split(xp + carry.h @ params["w_hh"], 4, axis=-1)
    p_i, p_f, p_o = params["peep"]
    c = jax.nn.sigmoid(f + p_f * carry.c) * carry.c + jax.nn.sigmoid(i + p_i * carry.c) * jnp.tanh(g)
    h = jax.nn.sigmoid(o + p_o * c) * jnp.tanh(c)
    return drnn.LSTMState(h, c), h

  def initial_carry(batch_size, dtype=jnp.float32):
    return drnn.LSTMState(jnp.zeros((batch_size, H), dtype), jnp.zeros((batch_size, H), dtype))

  return drnn.Cell(init=init, project=project, recur=recur,
                   step=lambda p, c, x: recur(p, c, project(p, x)),
                   initial_carry=initial_carry, hidden_size=H, kind="peephole_lstm", gates=4)


def numpy_peephole(layers, xs, lengths):
  """The stack in float64 NumPy, one sequence at a time, each cut to its length."""
  sig = lambda v: 1 / (1 + np.exp(-v))
  B, T, _ = xs.shape
  out = np.zeros((B, T, layers[-1]["w_hh"].shape[0]))
  for b in range(B):
    seq = xs[b, :lengths[b]]
    for p in layers:
      H = p["w_hh"].shape[0]
      h, c, ys = np.zeros(H), np.zeros(H), []
      for x in seq:
        i, f, g, o = np.split(x @ p["w_ih"] + h @ p["w_hh"] + p["b"], 4)
        c = sig(f + p["peep"][1] * c) * c + sig(i + p["peep"][0] * c) * np.tanh(g)
        h = sig(o + p["peep"][2] * c) * np.tanh(c)
        ys.append(h)
      seq = np.array(ys).reshape(len(seq), H)
    out[b, :lengths[b]] = seq
  return out


def setup(**options):
  model = drnn.stacked_rnn(peephole_lstm, 3, (4, 5, 5), **options)
  params = randomize(model.init(jax.random.key(0)), jax.random.key(1))
  xs = jax.random.normal(jax.random.key(2), (3, 6, 3))
  return model, params, xs, jnp.asarray([6, 2, 0], jnp.int32)


def test_user_cell_matches_its_equations_with_lengths():
  model, params, xs, lengths = setup()
  layers = [jax.tree.map(lambda a: np.asarray(a, np.float64), drnn.layer_params(model, params, l))
            for l in range(3)]
  want = numpy_peephole(layers, np.asarray(xs, np.float64), np.asarray(lengths))
  np.testing.assert_allclose(jax.jit(model.apply)(params, xs, lengths)[0], want, rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("options", [{"schedule": "wavefront", "residual": True},
                                     {"remat": True}, {"unroll": 2}],
                         ids=["wavefront", "remat", "unroll"])
def test_user_cell_every_schedule_equals_the_loop(options):
  model, params, xs, lengths = setup(dropout=0.3, **options)
  key = jax.random.key(3)
  got = jax.jit(model.apply, static_argnames="train")(params, xs, lengths, train=True, key=key)
  want = model.apply_reference(params, xs, lengths, train=True, key=key)
  assert_trees_close(got, want, 1e-5, 1e-5)


def test_user_cell_bidirectional_recurrent_dropout_resets_step():
  model, params, xs, lengths = setup(bidirectional=True, recurrent_dropout=0.3)
  resets = jnp.zeros((3, 6), bool).at[0, 3].set(True)
  run = jax.jit(model.apply, static_argnames="train")
  key = jax.random.key(4)
  ys, state = run(params, xs, lengths, train=True, key=key, resets=resets)
  assert ys.shape == (3, 6, 10) and np.isfinite(np.asarray(ys)).all()
  assert_trees_close((ys, state), model.apply_reference(params, xs, lengths, train=True,
                                                        key=key, resets=resets), 1e-5, 1e-5)
  uni, p, xs, _ = setup()
  carry, y = uni.step(p, uni.initial_state(3), xs[:, 0])
  assert_trees_close(y, uni.apply(p, xs[:, :1])[0][:, 0], 1e-6, 1e-6)


def test_user_cell_gradient_diagnostics():
  model, params, xs, lengths = setup(residual=True)
  loss = lambda ys: jnp.sum(ys[:, -1] ** 2)
  norms = drnn.diagnostics.state_gradient_norms(model, params, xs, loss, lengths=lengths)
  assert norms.state.shape == (3, 6)
  np.testing.assert_allclose(norms.loss, loss(model.apply(params, xs, lengths)[0]), rtol=1e-6)
  grads = jax.grad(lambda p: loss(model.apply(p, xs, lengths)[0]))(params)
  np.testing.assert_allclose(norms.params, drnn.diagnostics.param_gradient_norms(model, grads),
                             rtol=1e-5)
