"""The library against an independent float64 NumPy reference (`np_reference.py`).

`apply_reference` shares the cells, dropout and masking with `apply`, so comparing the two
cannot catch a wrong equation or a missing inverted-dropout scale; `np_reference` shares
no code with the library. Over an explicit grid of stacks (every cell, mixed widths with a
depth-scanned group of equal layers, lengths 0 and T, bidirectional, residual, layer norm,
dropout between layers and in the recurrence, both schedules, remat, random initial
states, every output selection) this checks:

  * jitted `apply` == the reference, outputs and final states;
  * `step` looped over time == the reference's step, and that == the reference's stack;
  * `jax.grad` of a scalar loss (default gradient path) against central finite
    differences of the float64 reference along random directions, in inference and with
    training-mode dropout.

The dropout keep-masks are re-derived here from the key schedule documented in
`stacked_rnn` and `drnn.keep_mask` (the only JAX on the reference side: `jax.random`
split, fold_in, bits; `helpers.documented_keep`); the reference applies the 1 / (1 - q)
scale itself, q being the rate rounded to 1/65536.

Cost: jit compilation. Shapes are tiny, each grid point builds one model (cached across
the tests), and programs compile with XLA's backend optimisations off (same numbers to
float32 rounding).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
import np_random
from helpers import documented_keep, documented_rate
from np_reference import Dropout, numpy_apply, numpy_stack, numpy_step

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
INPUT, HIDDEN, BATCH, TIME = 3, (5, 4, 4, 4), 3, 6  # a shape-changing layer, then a group
LENGTHS = (TIME, 0, 4)  # the edges 0 and T, and one in between
RESETS = np.zeros((BATCH, TIME), bool)  # segments: row 0 [0,2) [2,5) [5,6); row 2 [0,3)
RESETS[0, [2, 5]] = RESETS[1, 1] = True  # [3,4) and a reset in its padding
RESETS[2, [3, 5]] = True


def _case(kind, nonlinearity=None, *, bidirectional=False, residual=False, layer_norm=False,
          dropout=0.0, variational=False, recurrent_dropout=0.0, schedule="layer",
          remat=False, lengths=LENGTHS, random_state=False, output="sequence", train=False,
          grad=False, proj_size=None, resets=None):
  """One grid point: `stacked_rnn` options, inputs, how to run it, and whether the
  gradient test (the most expensive to compile) covers it too."""
  model_kw = dict(bidirectional=bidirectional, residual=residual, layer_norm=layer_norm,
                  dropout=dropout, variational=variational,
                  recurrent_dropout=recurrent_dropout, schedule=schedule, remat=remat)
  if nonlinearity is not None:
    model_kw["nonlinearity"] = nonlinearity
  if proj_size is not None:
    model_kw["proj_size"] = proj_size
  return dict(kind=kind, nonlinearity=nonlinearity or ("tanh" if kind == "rnn" else None),
              model_kw=model_kw, lengths=lengths, random_state=random_state, output=output,
              train=train, grad=grad, bidirectional=bidirectional, residual=residual,
              widths=HIDDEN if proj_size is None else (proj_size,) * len(HIDDEN),
              resets=resets)


CASES = {
    # inference ignores dropout: a rate without train=True must change nothing
    "rnn_tanh-all-dropout_off": _case("rnn", "tanh", dropout=0.3, output="all", grad=True),
    "rnn_relu-residual-state": _case("rnn", "relu", residual=True, random_state=True,
                                     lengths=None, grad=True),
    "rnn_relu-bidir-recurrent": _case("rnn", "relu", bidirectional=True,
                                      recurrent_dropout=0.25, output="last", train=True),
    "lstm-bidir-residual-last": _case("lstm", bidirectional=True, residual=True,
                                      random_state=True, output="last", grad=True),
    "lstm-ln-residual-dropout-recurrent": _case(
        "lstm", layer_norm=True, residual=True, dropout=0.3, recurrent_dropout=0.25,
        train=True, random_state=True, grad=True),
    "lstm-remat-bidir-dropout": _case("lstm", bidirectional=True, remat=True, dropout=0.3,
                                      train=True, output="all"),
    "gru-ln-state": _case("gru", layer_norm=True, random_state=True),
    "gru-bidir-variational-recurrent": _case(
        "gru", bidirectional=True, residual=True, dropout=0.3, variational=True,
        recurrent_dropout=0.25, train=True, output="all", grad=True),
    "gru-remat-recurrent-dropout": _case("gru", remat=True, dropout=0.3,
                                         recurrent_dropout=0.25, train=True, grad=True),
    "rnn_tanh-wavefront-residual-dropout": _case(
        "rnn", "tanh", schedule="wavefront", residual=True, dropout=0.3, train=True,
        random_state=True, output="all"),
    "lstm-wavefront-variational-last": _case("lstm", schedule="wavefront", dropout=0.3,
                                             variational=True, train=True, output="last",
                                             grad=True),
    "gru-wavefront-ln-residual": _case("gru", schedule="wavefront", layer_norm=True,
                                       residual=True, random_state=True),
    # the redesign's segment resets and LSTM projections
    "lstm-proj-bidir-resets-recurrent": _case(
        "lstm", bidirectional=True, proj_size=2, resets=RESETS, random_state=True,
        recurrent_dropout=0.25, train=True, output="last", grad=True),
    "gru-wavefront-resets-residual": _case("gru", schedule="wavefront", residual=True,
                                           resets=RESETS, random_state=True, grad=True),
    "lstm-proj-residual-dropout": _case("lstm", proj_size=2, residual=True, dropout=0.3,
                                        train=True, random_state=True),
}
# step takes per-step reset flags, tested against apply in test_resets.py
UNIDIRECTIONAL = [name for name, c in CASES.items()
                  if not c["bidirectional"] and c["resets"] is None]
GRADIENT = [name for name, c in CASES.items() if c["grad"]]


def fast_jit(f, **kwargs):
  return jax.jit(f, compiler_options=FAST_COMPILE, **kwargs)


# --------------------------------------------------------------------------------------
# One grid point: the model, float32 inputs for the library, float64 copies for NumPy.

def np_layers(model, params):
  """Per layer, its params as float64 NumPy (params may be jax or NumPy arrays)."""
  return [jax.tree.map(lambda a: np.asarray(a, np.float64), drnn.layer_params(model, params, l))
          for l in range(len(model.cells))]


def np_state(model, state, bidirectional):
  """Per layer, per direction, (h, c) in float64 NumPy (c None for cells without one)."""
  if state is None:  # zeros, shaped without running anything
    shapes = jax.eval_shape(functools.partial(model.initial_state, BATCH))
    state = jax.tree.map(lambda s: np.zeros(s.shape), shapes)
  out = []
  for carry in state:
    pairs = carry if bidirectional else (carry,)
    out.append([(np.asarray(p.h, np.float64), np.asarray(p.c, np.float64))
                if isinstance(p, drnn.LSTMState) else (np.asarray(p, np.float64), None)
                for p in pairs])
  return out


def np_state_leaves(finals):
  """The reference's final states flattened: layer, direction, then h (and c)."""
  return [a for layer in finals for h, c in layer for a in ((h,) if c is None else (h, c))]


def output_leaves(ys):
  return list(ys) if isinstance(ys, tuple) else [ys]


def keep_masks(case, key):
  """The boolean keep-masks of `apply(..., train=True, key=key)`, re-derived from the key
  schedule documented in `stacked_rnn`: layer l's input dropout (l > 0) draws from
  split(key, L)[l] over its time-major input [T, B, F] (variational: [B, F]), its
  recurrent mask [B, H] from fold_in of that key with 1 (forward) or 2 (backward)."""
  kw = case["model_kw"]
  L, D = len(HIDDEN), 2 if kw["bidirectional"] else 1
  keys = jax.random.split(key, L)
  outs = case["widths"]  # each layer's output (and h) width: hidden, or proj_size
  widths = (INPUT,) + tuple(D * h for h in outs)  # what each layer reads
  keep, recurrent = [None] * L, [None] * L
  for l in range(L):
    if l > 0 and kw["dropout"] > 0:
      shape = (BATCH, widths[l]) if kw["variational"] else (TIME, BATCH, widths[l])
      keep[l] = documented_keep(keys[l], kw["dropout"], shape)
    if kw["recurrent_dropout"] > 0:
      recurrent[l] = [documented_keep(jax.random.fold_in(keys[l], 1 + d),
                                      kw["recurrent_dropout"], (BATCH, outs[l]))
                      for d in range(D)]
  return Dropout(documented_rate(kw["dropout"]), keep,
                 documented_rate(kw["recurrent_dropout"]), recurrent)


@functools.cache
def setup(name):
  """Everything one grid point needs, built once and shared by the tests."""
  case = CASES[name]
  seed = list(CASES).index(name)
  model = drnn.stacked_rnn(case["kind"], INPUT, HIDDEN, **case["model_kw"])
  params = np_random.params(model, seed, scale=0.5)  # every leaf random, biases included
  rng = np.random.default_rng(seed + 1000)
  xs = jnp.asarray(rng.standard_normal((BATCH, TIME, INPUT)), jnp.float32)
  lengths = None if case["lengths"] is None else jnp.asarray(case["lengths"], jnp.int32)
  state = None
  if case["random_state"]:
    shapes = jax.eval_shape(functools.partial(model.initial_state, BATCH))
    state = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape),
                                               jnp.float32), shapes)
  key = jax.random.key(seed) if case["train"] else None
  run = dict(train=case["train"], key=key, output=case["output"])
  if case["resets"] is not None:
    run["resets"] = jnp.asarray(case["resets"])
  return dict(
      case=case, model=model, params=params, xs=xs, lengths=lengths, state=state, run=run,
      np_xs=np.asarray(xs, np.float64),
      np_lengths=np.full(BATCH, TIME) if lengths is None else np.asarray(lengths),
      np_state=np_state(model, state, case["bidirectional"]),
      dropout=keep_masks(case, key) if case["train"] else None)


def reference(s, params, xs):
  """The float64 reference's (ys, final states) of grid point `s` at `params`, `xs`."""
  return numpy_apply(s["case"], np_layers(s["model"], params), xs, s["np_lengths"],
                     s["np_state"], s["dropout"])


def assert_close(got, want, rtol, what):
  """Leaves close, with an absolute tolerance relative to the largest magnitude."""
  assert len(got) == len(want), (what, len(got), len(want))
  for i, (g, w) in enumerate(zip(got, want)):
    g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
    assert g.shape == w.shape, (what, i, g.shape, w.shape)
    scale = max(1.0, float(np.abs(w).max(initial=0.0)))
    np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale, err_msg=f"{what}, leaf {i}")


# --------------------------------------------------------------------------------------
# The tests.

@pytest.mark.parametrize("name", CASES)
def test_apply_matches_reference(name):
  """Jitted apply == the NumPy reference: outputs and every layer's final state."""
  s = setup(name)
  apply = fast_jit(functools.partial(s["model"].apply, **s["run"]))
  ys, final = apply(s["params"], s["xs"], s["lengths"], s["state"])
  want_ys, want_final = reference(s, s["params"], s["np_xs"])
  assert_close(output_leaves(ys), output_leaves(want_ys), 2e-5, "outputs")
  assert_close(jax.tree.leaves(final), np_state_leaves(want_final), 2e-5, "final state")


@pytest.mark.parametrize("name", UNIDIRECTIONAL)
def test_step_matches_reference(name):
  """`step` looped over time == the reference's step (no dropout: step is inference), and
  that == the reference's stack over the full-length sequences."""
  s = setup(name)
  model, case = s["model"], s["case"]
  step = fast_jit(model.step)
  state = model.initial_state(BATCH) if s["state"] is None else s["state"]
  layers = np_layers(model, s["params"])
  np_carry = [pairs[0] for pairs in s["np_state"]]  # one direction
  ys, want = [], []
  for t in range(TIME):
    state, y = step(s["params"], state, s["xs"][:, t])
    np_carry, y_ref = numpy_step(case, layers, np_carry, s["np_xs"][:, t])
    ys.append(y)
    want.append(y_ref)
  assert_close([jnp.stack(ys, 1)], [np.stack(want, 1)], 2e-5, "step outputs")
  assert_close(jax.tree.leaves(state), np_state_leaves([[p] for p in np_carry]), 2e-5,
               "step state")
  seqs, finals = numpy_stack(case, layers, s["np_xs"], np.full(BATCH, TIME), s["np_state"])
  assert_close([np.stack(want, 1)], [seqs[-1]], 1e-12, "reference step vs reference stack")
  assert_close(np_state_leaves([[p] for p in np_carry]), np_state_leaves(finals), 1e-12,
               "reference step state vs reference stack")


@pytest.mark.parametrize("name", GRADIENT)
def test_gradient_matches_finite_differences(name):
  """The library's gradient (default path) of a scalar loss of outputs and final states,
  wrt params and xs, along random directions == central differences of the reference."""
  s = setup(name)
  model, rng = s["model"], np.random.default_rng(7)
  params64 = jax.tree.map(lambda a: np.asarray(a, np.float64), s["params"])
  want_ys, want_final = reference(s, params64, s["np_xs"])
  weights = [rng.standard_normal(a.shape)
             for a in output_leaves(want_ys) + np_state_leaves(want_final)]

  def loss(params, xs):
    ys, final = model.apply(params, xs, s["lengths"], s["state"], **s["run"])
    return sum(jnp.sum(jnp.asarray(w, jnp.float32) * a)
               for w, a in zip(weights, output_leaves(ys) + jax.tree.leaves(final)))

  def ref_loss(params, xs):
    ys, final = reference(s, params, xs)
    return sum(np.sum(w * a) for w, a in zip(weights, output_leaves(ys) + np_state_leaves(final)))

  g_params, g_xs = fast_jit(jax.grad(loss, argnums=(0, 1)))(s["params"], s["xs"])
  g_leaves, tree = jax.tree.flatten(g_params)
  p_leaves = jax.tree.leaves(params64)
  eps = 1e-6
  for on_params, on_xs in ((1.0, 0.0), (0.0, 1.0), (1.0, 1.0)):
    v_params = [on_params * rng.standard_normal(a.shape) for a in p_leaves]
    v_xs = on_xs * rng.standard_normal(s["np_xs"].shape)
    terms = [np.asarray(g, np.float64) * v for g, v in zip(g_leaves + [g_xs], v_params + [v_xs])]
    got = sum(np.sum(t) for t in terms)

    def shifted(sign, v_params=v_params, v_xs=v_xs):
      moved = [p + sign * eps * v for p, v in zip(p_leaves, v_params)]
      return ref_loss(jax.tree.unflatten(tree, moved), s["np_xs"] + sign * eps * v_xs)

    fd = (shifted(1.0) - shifted(-1.0)) / (2 * eps)  # float64: error ~1e-9, not 1e-3
    # an absolute floor from the terms' sizes, for directions where they cancel
    floor = 1e-4 * sum(np.abs(t).sum() for t in terms)
    np.testing.assert_allclose(got, fd, rtol=1e-3, atol=floor,
                               err_msg=f"direction on params={on_params}, xs={on_xs}")


def test_wavefront_refuses_what_it_cannot_run():
  """The grid leaves these out of the wavefront cases because it refuses them."""
  for option in (dict(bidirectional=True), dict(recurrent_dropout=0.25), dict(remat=True)):
    with pytest.raises(ValueError, match="wavefront"):
      drnn.stacked_rnn("gru", INPUT, HIDDEN, schedule="wavefront", **option)
