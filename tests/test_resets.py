"""Segment resets: `apply(..., resets=)` equals running every segment on its own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from helpers import assert_trees_close, randomize

B, T, F = 3, 9, 2
WIDTHS = (4, 5, 5)
LENGTHS = np.array([9, 7, 0], np.int32)
RESETS = np.zeros((B, T), bool)
RESETS[0, [3, 4, 7]] = True  # segments [0,3) [3,4) [4,7) [7,9)
RESETS[1, [2, 8]] = True     # [0,2) [2,7) and a reset in the padding
RESETS[2, 1] = True          # a row of length 0

OPTIONS = {
    "layer": {},
    "wavefront": {"schedule": "wavefront", "residual": True},
    "remat": {"remat": True},
    "unroll": {"unroll": 2},
    "bidirectional": {"bidirectional": True},
    "bidirectional-remat": {"bidirectional": True, "remat": True, "residual": True},
}


def segments(row):
  """[(start, end), ...] of row `row`'s segments within its length."""
  starts = [0] + [t for t in range(1, T) if RESETS[row, t]]
  ends = starts[1:] + [T]
  return [(s, min(e, LENGTHS[row])) for s, e in zip(starts, ends) if s < LENGTHS[row]]


def setup(kind, options, seed=0):
  model = drnn.stacked_rnn(kind, F, WIDTHS, **options)
  params = randomize(model.init(jax.random.key(seed)), jax.random.key(seed + 1))
  xs = jax.random.normal(jax.random.key(seed + 2), (B, T, F))
  state = randomize(model.initial_state(B), jax.random.key(seed + 3))
  return model, params, xs, state


def row_state(state, b):
  return jax.tree.map(lambda a: a[b:b + 1], state)


def by_segments(model, params, xs, state):
  """Every segment of every row run alone from the row's initial state: (ys, final)."""
  apply = jax.jit(model.apply)
  ys = np.zeros((B, T, model.layers[-1].width), np.float32)
  finals = []
  for b in range(B):
    runs = [row_state(state, b)]
    for s, e in segments(b):
      y, final = apply(params, xs[b:b + 1, s:e], initial_state=row_state(state, b))
      ys[b, s:e] = y[0]
      runs.append(final)
    if model.bidirectional:  # the forward direction ends in the last segment, the
      # backward one in the first
      first = runs[1] if len(runs) > 1 else runs[0]
      finals.append(tuple((fwd, bwd) for (fwd, _), (_, bwd) in zip(runs[-1], first)))
    else:
      finals.append(runs[-1])
  return ys, jax.tree.map(lambda *a: jnp.concatenate(a), *finals)


CASES = [("lstm", "layer"), ("gru", "wavefront"), ("lstm", "remat"), ("gru", "unroll"),
         ("gru", "bidirectional"), ("lstm", "bidirectional-remat")]


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_resets_equal_running_each_segment_alone(kind, name):
  model, params, xs, state = setup(kind, OPTIONS[name])
  want = by_segments(model, params, xs, state)
  apply = jax.jit(model.apply)
  got = apply(params, xs, jnp.asarray(LENGTHS), state, resets=jnp.asarray(RESETS))
  assert_trees_close(got, want, 1e-5, 1e-5)


def test_reference_loop_takes_resets():
  model, params, xs, state = setup("lstm", OPTIONS["bidirectional"])
  got = model.apply_reference(params, xs, LENGTHS, state, resets=RESETS)
  assert_trees_close(got, by_segments(model, params, xs, state), 1e-5, 1e-5)


def test_resets_gradients_equal_the_segments():
  """Gradients through a reset equal those of the two segments run apart (row 0 of a
  batch of one, reset at t = 4; row 0's initial state)."""
  model, params, xs, state = setup("rnn", {"residual": True})
  xs, state = xs[:1], row_state(state, 0)
  resets = jnp.zeros((1, T), bool).at[0, 4].set(True)
  w = jax.random.normal(jax.random.key(9), (1, T, model.layers[-1].width))

  def loss(params, xs):
    return jnp.sum(model.apply(params, xs, None, state, resets=resets)[0] * w)

  def loss_segments(params, xs):
    first = model.apply(params, xs[:, :4], initial_state=state)[0]
    second = model.apply(params, xs[:, 4:], initial_state=state)[0]
    return jnp.sum(first * w[:, :4]) + jnp.sum(second * w[:, 4:])

  assert_trees_close(jax.jit(jax.grad(loss, (0, 1)))(params, xs),
                     jax.jit(jax.grad(loss_segments, (0, 1)))(params, xs), 1e-5, 1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_step_reset_equals_apply_resets(kind):
  """`step(..., reset=)` restarts from zeros: the streaming form of `resets`."""
  model, params, xs, _ = setup(kind, {"residual": True})
  want, _ = model.apply(params, xs, resets=jnp.asarray(RESETS))
  state, ys = model.initial_state(B), []
  for t in range(T):
    state, y = model.step(params, state, xs[:, t], reset=jnp.asarray(RESETS[:, t]))
    ys.append(y)
  assert_trees_close(jnp.stack(ys, 1), want, 1e-5, 1e-5)


def test_no_resets_is_the_plain_stack():
  model, params, xs, state = setup("gru", {})
  assert_trees_close(model.apply(params, xs, None, state, resets=jnp.zeros((B, T), bool)),
                     model.apply(params, xs, None, state), 1e-6, 1e-6)


def test_bad_resets():
  model, params, xs, _ = setup("gru", {})
  with pytest.raises(ValueError, match=r"resets: expected shape \(3, 9\) \[batch, time\]"):
    model.apply(params, xs, resets=jnp.zeros((T, B), bool))
  with pytest.raises(TypeError, match="resets: expected a bool array"):
    model.apply(params, xs, resets=jnp.zeros((B, T), jnp.int32))
  with pytest.raises(ValueError, match=r"reset: expected a bool array \(3,\)"):
    model.step(params, model.initial_state(B), xs[:, 0], reset=jnp.zeros((2,), bool))
