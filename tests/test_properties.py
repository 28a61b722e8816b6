"""Property tests (hypothesis) over random stacks: cells, depths, widths, batches, times,
lengths, options and dtypes.

Every example builds a random stack and checks it against references: an independent
NumPy loop written from the equations in the cells' docstrings (`np_reference.py`:
float64, one sequence at a time, each cut to its length, so it is also the "run the
sequence unpadded" reference), and the library's Python-loop `apply_reference`.

Cost: every example has new shapes, so it compiles. The model is jitted once per example
with XLA's backend optimisations off (`FAST_COMPILE`, 2-3x cheaper to compile, same
numbers to float32 rounding), and the eager `apply_reference` runs only on short
sequences. Run `pytest tests/test_properties.py --hypothesis-show-statistics` to see how
many examples each property tried and what they covered.

Coverage: under CI hypothesis derandomizes, so the random examples are a fixed few that
may miss a cell, schedule or option for good. Each property therefore first runs a short
list of explicit covering examples (`covered_by`), which `test_covering_examples_cover_
everything` checks against the full lists below (CELLS, SCHEDULES, OUTPUTS, DROPOUTS,
OPTIONS); the random examples come on top.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, event, example, given, settings, strategies as st
from hypothesis.internal.detection import is_hypothesis_test

import deeprnn_jax as drnn
from np_reference import numpy_output, numpy_stack

# What the properties exercise, named explicitly: the options are passed to `stacked_rnn`
# and `apply` by these names, so a renamed or removed option fails loudly instead of
# dropping out of the tests. `test_covering_examples_cover_everything` checks that each
# property's explicit examples exercise every entry, so a cell, schedule or option added
# here without a covering example fails too.
CELLS = {"rnn-tanh": ("rnn", "tanh"), "rnn-relu": ("rnn", "relu"), "lstm": ("lstm", None),
         "gru": ("gru", None)}
KINDS = tuple(CELLS.values())
# every way the library can run a stack, each expected to give the reference numbers; the
# depth scan (schedule="layer", unroll=1, no remat) is the default
SCHEDULES = (("depth-scan", {}), ("unroll=3", {"unroll": 3}),
             ("wavefront", {"schedule": "wavefront"}), ("remat", {"remat": True}))
OUTPUTS = ("sequence", "last", "all")
# the kinds of training-mode dropout, as `stacked_rnn` arguments
DROPOUTS = {"elementwise": {"dropout": 0.3}, "variational": {"dropout": 0.3, "variational": True},
            "recurrent": {"recurrent_dropout": 0.25}}
OPTIONS = ("bidirectional", "residual", "layer_norm", "random initial state", "lengths with 0",
           "lengths with T", "group of equal layers", "depth=1", "depth>=3")
FEATURES = (tuple(f"cell={c}" for c in CELLS) + tuple(f"schedule={n}" for n, _ in SCHEDULES)
            + tuple(f"output={o}" for o in OUTPUTS) + OPTIONS
            + tuple(f"dropout={d}" for d in DROPOUTS))
# the time scan on its own (one layer, `scan_layer`)
UNROLLS = (1, 3)
LAYER_FEATURES = (tuple(f"cell={c}" for c in CELLS) + ("forward", "reverse")
                  + tuple(f"unroll={u}" for u in UNROLLS) + ("lengths with 0", "lengths with T"))

# `deadline=None`: a new shape compiles, which takes a variable time on a shared machine.
SETTINGS = dict(deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# DEEPRNN_EXAMPLES_SCALE multiplies every property's example budget (e.g. 10 for a long
# local hunt); the defaults are sized for CI.
SCALE = float(os.environ.get("DEEPRNN_EXAMPLES_SCALE", "1"))
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def examples(n):
  return max(1, round(n * SCALE))


def fast_jit(f, **kwargs):
  return jax.jit(f, compiler_options=FAST_COMPILE, **kwargs)


# --------------------------------------------------------------------------------------
# Strategies: a random stack configuration; arrays come from a NumPy seed so that
# hypothesis shrinks shapes and options, not thousands of floats.

@st.composite
def stacks(draw, max_depth=6, max_width=64, max_batch=8, max_time=50, options=True):
  kind, nonlinearity = draw(st.sampled_from(KINDS))
  # a small pool of widths, so that stacks mix runs of equal layers (depth-scanned groups)
  # with shape-changing ones
  pool = draw(st.lists(st.integers(1, max_width), min_size=1, max_size=3))
  depth = draw(st.integers(1, max_depth))
  widths = tuple(draw(st.sampled_from(pool)) for _ in range(depth))
  input_size = draw(st.one_of(st.sampled_from(pool), st.integers(1, max_width)))
  batch = draw(st.integers(1, max_batch))
  time = draw(st.integers(1, max_time))
  lengths = None
  if draw(st.booleans()):  # lengths biased towards the edges 0 and T
    edge = st.one_of(st.just(0), st.just(time), st.integers(0, time))
    lengths = tuple(draw(st.lists(edge, min_size=batch, max_size=batch)))
  flag = lambda: options and draw(st.booleans())
  return dict(
      kind=kind, nonlinearity=nonlinearity, widths=widths, input_size=input_size,
      batch=batch, time=time, lengths=lengths, random_state=draw(st.booleans()),
      seed=draw(st.integers(0, 2**31 - 1)), bidirectional=flag(), residual=flag(),
      layer_norm=kind != "rnn" and flag(),
      output=draw(st.sampled_from(OUTPUTS)) if options else "sequence")


def stack(cell, input_size, widths, batch, time, lengths=None, seed=0, random_state=False,
          bidirectional=False, residual=False, layer_norm=False, output="sequence"):
  """A configuration as `stacks` draws it, for the explicit examples."""
  kind, nonlinearity = CELLS[cell]
  return dict(kind=kind, nonlinearity=nonlinearity, widths=tuple(widths),
              input_size=input_size, batch=batch, time=time,
              lengths=None if lengths is None else tuple(lengths), random_state=random_state,
              seed=seed, bidirectional=bidirectional, residual=residual, layer_norm=layer_norm,
              output=output)


def schedule(name):
  return name, dict(SCHEDULES)[name]


def cell_name(cfg):
  return next(n for n, k in CELLS.items() if k == (cfg["kind"], cfg["nonlinearity"]))


def layer_shapes(cfg):
  """(what it reads, its width) per layer: equal neighbours form one depth-scanned group."""
  reads = (cfg["input_size"],) + tuple((1 + cfg["bidirectional"]) * h for h in cfg["widths"])
  return list(zip(reads, cfg["widths"]))


def features(cfg, schedules=("depth-scan",), train=None):
  """The entries of FEATURES that one run of `cfg` exercises: only what acts counts
  (residual where a layer is as wide as its input, dropout between layers from depth 2)."""
  out = {f"cell={cell_name(cfg)}", f"output={cfg['output']}"}
  out |= {f"schedule={name}" for name in schedules}
  depth = len(cfg["widths"])
  out |= {"depth=1"} if depth == 1 else {"depth>=3"} if depth >= 3 else set()
  shapes = layer_shapes(cfg)
  if any(a == b for a, b in zip(shapes, shapes[1:])):
    out.add("group of equal layers")
  if cfg["lengths"] is not None:
    out |= {"lengths with 0"} if 0 in cfg["lengths"] else set()
    out |= {"lengths with T"} if cfg["time"] in cfg["lengths"] else set()
  if cfg["random_state"]:
    out.add("random initial state")
  if cfg["bidirectional"]:
    out.add("bidirectional")
  if cfg["residual"] and any(a == b for a, b in zip(cfg["widths"], cfg["widths"][1:])):
    out.add("residual")
  if cfg["layer_norm"]:
    out.add("layer_norm")
  train = train or {}
  if train.get("dropout", 0) > 0 and depth >= 2:
    out.add("dropout=variational" if train.get("variational") else "dropout=elementwise")
  if train.get("recurrent_dropout", 0) > 0:
    out.add("dropout=recurrent")
  return out


def record(cfg, schedules=("depth-scan",), train=None, **extra):
  """Hypothesis events, shown by --hypothesis-show-statistics: what the examples covered."""
  for name in sorted(features(cfg, schedules, train)):
    event(name)
  event(f"depth={len(cfg['widths'])}")
  event(f"train={train is not None}")
  for k, v in extra.items():
    event(f"{k}={v}")


# property name -> its explicit examples, what one of them exercises (a set of names from
# `universe`), the names it leaves out (with the reason), and its strategy's bounds
COVERAGE = {}


def covered_by(cases, exercised, left_out=(), universe=FEATURES, bounds=None):
  """Runs `cases` (keyword arguments of the test) as explicit examples, before the random
  ones. Under CI hypothesis derandomizes, so the random examples are the same few every
  run: these make sure each property sees every cell, schedule and option at least once."""
  def wrap(test):
    for kw in reversed(cases):
      test = example(**kw)(test)
    COVERAGE[test.__name__] = dict(cases=cases, exercised=exercised, left_out=dict(left_out),
                                   universe=universe, bounds=bounds)
    return test
  return wrap


def build(cfg, dtype=jnp.float32, **kwargs):
  """The model, random parameters, inputs, lengths and initial state of a configuration.

  Parameters come from NumPy (no `init` compile): kernels with std 0.9 / sqrt(fan-in), so
  a deep ReLU stack over 50 steps stays finite; biases (the LSTM forget bias and the
  GRU's b_hn included) std 0.3; layer-norm gains 1 +- 0.3.
  """
  model = drnn.stacked_rnn(cfg["kind"], cfg["input_size"], cfg["widths"],
                           nonlinearity=cfg["nonlinearity"],
                           bidirectional=cfg["bidirectional"], residual=cfg["residual"],
                           layer_norm=cfg["layer_norm"], **kwargs)
  rng = np.random.default_rng(cfg["seed"])
  shapes = jax.eval_shape(functools.partial(model.init, dtype=dtype), jax.random.key(0))

  def draw(path, s):
    name = jax.tree_util.keystr(path[-1:])
    z = rng.standard_normal(s.shape)
    if "w_" in name:  # [layers, in, G*H]
      return jnp.asarray(0.9 / np.sqrt(s.shape[-2]) * z, dtype)
    return jnp.asarray((1.0 if "scale" in name else 0.0) + 0.3 * z, dtype)

  params = jax.tree_util.tree_map_with_path(draw, shapes)
  B, T = cfg["batch"], cfg["time"]
  xs = jnp.asarray(rng.standard_normal((B, T, cfg["input_size"])), dtype)
  lengths = None if cfg["lengths"] is None else jnp.asarray(cfg["lengths"], jnp.int32)
  state = None
  if cfg["random_state"]:
    state = jax.tree.map(lambda a: jnp.asarray(0.5 * rng.standard_normal(a.shape), a.dtype),
                         model.initial_state(B, dtype))
  return model, params, xs, lengths, state


def np_state(model, state, cfg):
  """Per layer, per direction, (h, c) in float64 NumPy (c None for cells without one)."""
  state = model.initial_state(cfg["batch"]) if state is None else state
  out = []
  for carry in state:
    pairs = carry if cfg["bidirectional"] else (carry,)
    out.append([(np.asarray(p.h, np.float64), np.asarray(p.c, np.float64))
                if isinstance(p, drnn.LSTMState) else (np.asarray(p, np.float64), None)
                for p in pairs])
  return out


def np_layers(model, params):
  return [jax.tree.map(lambda a: np.asarray(a, np.float64), drnn.layer_params(model, params, l))
          for l in range(len(model.cells))]


def np_lengths(cfg):
  return np.full(cfg["batch"], cfg["time"]) if cfg["lengths"] is None else np.array(cfg["lengths"])


def assert_close(got, want, rtol, what):
  """Leaves close with a tolerance relative to the largest magnitude (deep stacks grow)."""
  got_l, want_l = jax.tree.leaves(got), jax.tree.leaves(want)
  assert len(got_l) == len(want_l), (what, len(got_l), len(want_l))
  for i, (g, w) in enumerate(zip(got_l, want_l)):
    g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
    assert g.shape == w.shape, (what, i, g.shape, w.shape)
    assert np.all(np.isfinite(g)), f"{what}: non-finite values in leaf {i}"
    scale = max(1.0, float(np.abs(w).max(initial=0.0)))
    np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale, err_msg=f"{what}, leaf {i}")


def state_leaves(state, cfg):
  """The final state flattened in the NumPy reference's order: layer, direction, (h, c)."""
  out = []
  for carry in state:
    for p in (carry if cfg["bidirectional"] else (carry,)):
      out += [p.h, p.c] if isinstance(p, drnn.LSTMState) else [p]
  return out


def np_state_leaves(finals):
  return [a for layer in finals for h, c in layer for a in ((h,) if c is None else (h, c))]


def for_schedule(cfg, kwargs, train=None):
  """`cfg` and `train` without what the schedule refuses: the wavefront steps
  unidirectional layers without a recurrent mask (`stacked_rnn` raises otherwise)."""
  if kwargs.get("schedule") != "wavefront":
    return cfg, train
  train = None if train is None else dict(train, recurrent_dropout=0.0)
  return dict(cfg, bidirectional=False), train


def run_numpy(cfg, model, params, xs, state):
  seqs, finals = numpy_stack(cfg, np_layers(model, params), np.asarray(xs, np.float64),
                             np_lengths(cfg), np_state(model, state, cfg))
  return numpy_output(cfg, seqs, np_lengths(cfg)), finals


# --------------------------------------------------------------------------------------
# Properties. Each runs its covering examples (`covered_by`), then random ones; what a
# property leaves out of FEATURES is named with the reason. The covering examples spread
# the options over small stacks rather than pile them on one: each example compiles, and
# e.g. a bidirectional, layer-normed, 3-deep LSTM (remat's backward pass above all)
# compiles several times longer than each of its options on its own.

STACK_BOUNDS = dict(max_depth=6, max_width=64, max_batch=8, max_time=50)
DEFAULT_SCHEDULE_ONLY = {
    f"schedule={name}": "runs the default schedule; test_every_schedule_equals_per_layer_loop "
    "ties the others to it" for name, _ in SCHEDULES[1:]}
INFERENCE_ONLY = {f"dropout={d}": "inference only" for d in DROPOUTS}


def default_case(cfg):
  return cfg, ("depth-scan",), None


@settings(max_examples=examples(15), **SETTINGS)
@covered_by([
    dict(cfg=stack("rnn-tanh", 5, (8,), 3, 7, lengths=(0, 7, 3), seed=1, bidirectional=True,
                   output="last")),
    dict(cfg=stack("rnn-relu", 6, (6, 6, 6), 2, 9, seed=2, random_state=True, residual=True,
                   output="all")),
    dict(cfg=stack("lstm", 3, (4, 4, 4), 2, 6, lengths=(6, 0), seed=3, random_state=True,
                   layer_norm=True)),
    dict(cfg=stack("gru", 4, (5, 5), 3, 8, lengths=(8, 2, 0), seed=4, residual=True,
                   layer_norm=True, output="last")),
], lambda cfg: features(*default_case(cfg)), DEFAULT_SCHEDULE_ONLY | INFERENCE_ONLY,
   bounds=STACK_BOUNDS)
@given(cfg=stacks(**STACK_BOUNDS))
def test_apply_matches_numpy_equations(cfg):
  """apply == a NumPy loop over the documented equations: outputs (every selection) and
  final states, for every cell, depth, width mix, lengths, initial state and option."""
  record(cfg)
  model, params, xs, lengths, state = build(cfg)
  ys, final = fast_jit(functools.partial(model.apply, output=cfg["output"]))(
      params, xs, lengths, state)
  want_ys, want_final = run_numpy(cfg, model, params, xs, state)
  assert_close(ys, want_ys, 2e-4, "outputs vs NumPy")
  assert_close(state_leaves(final, cfg), np_state_leaves(want_final), 2e-4, "state vs NumPy")


@st.composite
def training(draw):
  """Dropout settings for a training-mode apply (or None for inference)."""
  if not draw(st.booleans()):
    return None
  return {"dropout": draw(st.sampled_from((0.0, 0.3))),
          "recurrent_dropout": draw(st.sampled_from((0.0, 0.25))),
          "variational": draw(st.booleans())}


def padding_case(cfg, schedule, train):
  """This property is about lengths (always some) and reads the padded outputs."""
  name, kwargs = schedule
  cfg, train = for_schedule(cfg, kwargs, train)
  T, B = cfg["time"], cfg["batch"]
  if cfg["lengths"] is None:
    cfg = dict(cfg, lengths=tuple(int(n) for n in
                                  np.random.default_rng(cfg["seed"]).integers(0, T + 1, B)))
  return dict(cfg, output="sequence"), (name,), train


SEQUENCE_ONLY = {f"output={o}": "reads the whole output sequence" for o in OUTPUTS[1:]}


@settings(max_examples=examples(7), **SETTINGS)
@covered_by([
    dict(cfg=stack("rnn-tanh", 3, (8,), 3, 6, lengths=(0, 6, 2), seed=11, bidirectional=True),
         schedule=schedule("depth-scan"), train=DROPOUTS["recurrent"]),
    dict(cfg=stack("rnn-relu", 6, (6, 6, 6), 2, 7, lengths=(7, 0), seed=12, random_state=True,
                   residual=True), schedule=schedule("unroll=3"), train=DROPOUTS["elementwise"]),
    dict(cfg=stack("lstm", 4, (4, 4, 4), 3, 4, lengths=(3, 0, 4), seed=13, random_state=True,
                   layer_norm=True), schedule=schedule("wavefront"),
         train=DROPOUTS["variational"]),
    dict(cfg=stack("gru", 4, (4, 7), 2, 9, lengths=(0, 9), seed=14, layer_norm=True),
         schedule=schedule("remat"), train=None),
], lambda **kw: features(*padding_case(**kw)), SEQUENCE_ONLY, bounds=STACK_BOUNDS)
@given(cfg=stacks(**STACK_BOUNDS), schedule=st.sampled_from(SCHEDULES), train=training())
def test_padding_past_lengths_changes_nothing(cfg, schedule, train):
  """New values past each length change neither outputs nor state (bit for bit), padded
  outputs are exactly 0, and a sequence of length 0 keeps its initial state exactly; in
  inference and in training with dropout."""
  cfg, names, train = padding_case(cfg, schedule, train)
  T, B = cfg["time"], cfg["batch"]
  record(cfg, names, train)
  model, params, xs, lengths, state = build(cfg, **schedule[1], **(train or {}))
  pad = np.arange(T)[None, :, None] >= np.asarray(lengths)[:, None, None]  # [B, T, 1]
  noise = 1e3 * np.random.default_rng(cfg["seed"] + 1).standard_normal(xs.shape)
  noisy = jnp.where(jnp.asarray(pad), jnp.asarray(noise, xs.dtype), xs)
  run = {} if train is None else dict(train=True, key=jax.random.key(cfg["seed"] % 997))
  apply = fast_jit(functools.partial(model.apply, **run))
  ys, final = apply(params, xs, lengths, state)
  ys2, final2 = apply(params, noisy, lengths, state)
  for a, b in zip(jax.tree.leaves((ys, final)), jax.tree.leaves((ys2, final2))):
    np.testing.assert_array_equal(a, b)
  assert not np.any(np.where(pad, np.asarray(ys), 0.0)), "padded outputs must be zero"
  zero = np.asarray(lengths) == 0
  init = model.initial_state(B) if state is None else state
  for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(init)):
    np.testing.assert_array_equal(np.asarray(got)[zero], np.asarray(want)[zero])


def schedule_case(cfg, schedule, train):
  cfg, train = for_schedule(cfg, schedule[1], train)
  return cfg, (schedule[0],), train


LOOP_BOUNDS = dict(max_depth=4, max_width=24, max_batch=4, max_time=6)


@settings(max_examples=examples(5), **SETTINGS)
@covered_by([
    dict(cfg=stack("rnn-tanh", 3, (5,), 3, 4, lengths=(0, 4, 2), seed=21, bidirectional=True,
                   output="last"), schedule=schedule("depth-scan"), train=DROPOUTS["recurrent"]),
    dict(cfg=stack("rnn-relu", 6, (6, 6, 6), 2, 4, seed=22, random_state=True, residual=True,
                   output="all"), schedule=schedule("unroll=3"), train=DROPOUTS["elementwise"]),
    dict(cfg=stack("lstm", 4, (4, 4, 4), 2, 4, lengths=(4, 0), seed=23, layer_norm=True),
         schedule=schedule("wavefront"), train=DROPOUTS["variational"]),
    dict(cfg=stack("gru", 2, (3, 5), 3, 4, lengths=(4, 4, 1), seed=24, random_state=True,
                   layer_norm=True, output="all"),
         schedule=schedule("remat"), train=None),
], lambda **kw: features(*schedule_case(**kw)), bounds=LOOP_BOUNDS)
@given(cfg=stacks(**LOOP_BOUNDS), schedule=st.sampled_from(SCHEDULES), train=training())
def test_every_schedule_equals_per_layer_loop(cfg, schedule, train):
  """Each schedule's outputs and state equal the per-layer, per-step Python loop's
  (`apply_reference`), in inference and in training with the same dropout key."""
  cfg, names, train = schedule_case(cfg, schedule, train)
  record(cfg, names, train)
  model, params, xs, lengths, state = build(cfg, **schedule[1], **(train or {}))
  run = dict(output=cfg["output"])
  if train is not None:
    run.update(train=True, key=jax.random.key(cfg["seed"] % 997))
  got = fast_jit(functools.partial(model.apply, **run))(params, xs, lengths, state)
  want = model.apply_reference(params, xs, lengths, state, **run)
  assert_close(got, want, 1e-5, f"{schedule[0]} vs apply_reference")


def gradient_case(cfg, schedule):
  """The depth scan's gradients against `schedule`'s, of a loss over the output sequence."""
  cfg, _ = for_schedule(dict(cfg, output="sequence"), schedule[1])
  return cfg, ("depth-scan", schedule[0]), None


GRAD_BOUNDS = dict(max_depth=3, max_width=16, max_batch=4, max_time=10)


@settings(max_examples=examples(2), **SETTINGS)
@covered_by([
    dict(cfg=stack("rnn-tanh", 3, (6,), 3, 6, lengths=(0, 6, 2), seed=31, bidirectional=True),
         schedule=schedule("remat")),
    dict(cfg=stack("rnn-relu", 5, (5, 5, 5), 2, 5, seed=32, random_state=True, residual=True),
         schedule=schedule("wavefront")),
    dict(cfg=stack("lstm", 3, (4, 4), 2, 5, lengths=(5, 0), seed=33, random_state=True,
                   layer_norm=True), schedule=schedule("unroll=3")),
    dict(cfg=stack("gru", 4, (4, 6), 3, 6, lengths=(6, 3, 0), seed=34),
         schedule=schedule("unroll=3")),
], lambda **kw: features(*gradient_case(**kw)),
   SEQUENCE_ONLY | {f"dropout={d}": "gradients of inference" for d in DROPOUTS},
   bounds=GRAD_BOUNDS)
@given(cfg=stacks(**GRAD_BOUNDS), schedule=st.sampled_from(SCHEDULES[1:]))
def test_gradients_finite_blind_to_padding_and_schedule_free(cfg, schedule):
  """Gradients wrt parameters, inputs and initial state are finite; inputs past a
  sequence's length get exactly zero gradient; every schedule gives the depth scan's."""
  name, kwargs = schedule
  cfg, names, _ = gradient_case(cfg, schedule)
  record(cfg, names)
  w = None

  def grads(**kw):
    nonlocal w
    model, params, xs, lengths, state = build(cfg, **kw)
    state = model.initial_state(cfg["batch"]) if state is None else state
    if w is None:
      w = jnp.asarray(np.random.default_rng(cfg["seed"] + 2).standard_normal(
          (cfg["batch"], cfg["time"], model.hidden_sizes[-1] * (1 + cfg["bidirectional"]))),
          jnp.float32)

    def loss(params, xs, state):
      ys, final = model.apply(params, xs, lengths, state)
      return jnp.sum(w * ys) + sum(jnp.sum(a) for a in jax.tree.leaves(final))

    return fast_jit(jax.grad(loss, argnums=(0, 1, 2)))(params, xs, state), lengths

  base, lengths = grads()
  for g in jax.tree.leaves(base):
    assert np.all(np.isfinite(np.asarray(g))), "non-finite gradient"
  if lengths is not None:
    pad = np.arange(cfg["time"])[None, :] >= np.asarray(lengths)[:, None]  # [B, T]
    assert not np.any(np.asarray(base[1])[pad]), "padded inputs must get zero gradient"
  other, _ = grads(**kwargs)
  assert_close(other, base, 1e-4, f"{name} gradients vs depth scan")


LAYER_BOUNDS = dict(max_width=64, max_batch=8, max_time=50)


@st.composite
def layers(draw, max_width, max_batch, max_time):
  """One layer's configuration for the time scan on its own."""
  kind, nonlinearity = draw(st.sampled_from(KINDS))
  batch, time = draw(st.integers(1, max_batch)), draw(st.integers(1, max_time))
  lengths = None
  if draw(st.booleans()):
    edge = st.one_of(st.just(0), st.just(time), st.integers(0, time))
    lengths = tuple(draw(st.lists(edge, min_size=batch, max_size=batch)))
  return dict(kind=kind, nonlinearity=nonlinearity, hidden=draw(st.integers(1, max_width)),
              features=draw(st.integers(1, max_width)), batch=batch, time=time,
              lengths=lengths, reverse=draw(st.booleans()),
              unroll=draw(st.sampled_from(UNROLLS)), seed=draw(st.integers(0, 2**31 - 1)))


def layer(cell, features, hidden, batch, time, lengths=None, reverse=False, unroll=1, seed=0):
  """A configuration as `layers` draws it, for the explicit examples."""
  kind, nonlinearity = CELLS[cell]
  return dict(kind=kind, nonlinearity=nonlinearity, hidden=hidden, features=features,
              batch=batch, time=time, lengths=None if lengths is None else tuple(lengths),
              reverse=reverse, unroll=unroll, seed=seed)


def layer_features(cfg):
  out = {f"cell={cell_name(cfg)}", "reverse" if cfg["reverse"] else "forward",
         f"unroll={cfg['unroll']}"}
  if cfg["lengths"] is not None:
    out |= {"lengths with 0"} if 0 in cfg["lengths"] else set()
    out |= {"lengths with T"} if cfg["time"] in cfg["lengths"] else set()
  return out


@settings(max_examples=examples(5), **SETTINGS)
@covered_by([
    dict(cfg=layer("rnn-tanh", 3, 5, 3, 6, lengths=(0, 6, 3), seed=41)),
    dict(cfg=layer("rnn-relu", 4, 6, 2, 7, reverse=True, unroll=3, seed=42)),
    dict(cfg=layer("lstm", 5, 4, 2, 5, lengths=(5, 0), reverse=True, seed=43)),
    dict(cfg=layer("gru", 3, 7, 2, 5, lengths=(2, 5), unroll=3, seed=44)),
], layer_features, universe=LAYER_FEATURES, bounds=LAYER_BOUNDS)
@given(cfg=layers(**LAYER_BOUNDS))
def test_time_scan_custom_gradient_equals_autodiff(cfg):
  """The time scan's hand-written JVP (`fast_grad=True`) gives the values and gradients
  (wrt parameters, inputs and initial carry) of autodiff through the plain `lax.scan`."""
  for name in sorted(layer_features(cfg)):
    event(name)
  kw = {"nonlinearity": cfg["nonlinearity"]} if cfg["kind"] == "rnn" else {}
  cell = {"rnn": drnn.rnn, "lstm": drnn.lstm, "gru": drnn.gru}[cfg["kind"]](cfg["hidden"], **kw)
  rng = np.random.default_rng(cfg["seed"])
  normal = lambda shape, std: jnp.asarray(std * rng.standard_normal(shape), jnp.float32)
  shapes = jax.eval_shape(functools.partial(cell.init, input_size=cfg["features"]),
                          jax.random.key(0))
  params = {k: normal(s.shape, 0.9 / np.sqrt(s.shape[0]) if s.ndim == 2 else 0.3)
            for k, s in shapes.items()}
  B, T = cfg["batch"], cfg["time"]
  xs = normal((T, B, cfg["features"]), 1.0)  # [T, B, F]
  carry = jax.tree.map(lambda a: normal(a.shape, 0.5), cell.initial_carry(B))
  lengths = None if cfg["lengths"] is None else jnp.asarray(cfg["lengths"], jnp.int32)
  w = normal((T, B, cfg["hidden"]), 1.0)

  def run(fast):
    def loss(params, xs, carry):
      final, ys = drnn.scan_layer(cell, params, xs, carry, lengths, reverse=cfg["reverse"],
                                  unroll=cfg["unroll"], fast_grad=fast)
      return jnp.sum(w * ys) + sum(jnp.sum(a) for a in jax.tree.leaves(final)), (final, ys)

    return fast_jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(
        params, xs, carry)

  got, want = run(True), run(False)
  assert_close(got[0][1], want[0][1], 1e-5, "values (final carry, ys)")
  assert_close(got[1], want[1], 1e-4, "gradients")


FLOAT64_BOUNDS = dict(max_depth=3, max_width=16, max_batch=4, max_time=12)


@settings(max_examples=examples(3), **SETTINGS)
@covered_by([
    dict(cfg=stack("rnn-tanh", 3, (6,), 3, 5, lengths=(0, 5, 2), seed=51, bidirectional=True,
                   output="last")),
    dict(cfg=stack("rnn-relu", 5, (5, 5, 5), 2, 6, seed=52, random_state=True, residual=True,
                   output="all")),
    dict(cfg=stack("lstm", 2, (4, 4, 4), 2, 6, lengths=(6, 0), seed=53, random_state=True,
                   layer_norm=True)),
    dict(cfg=stack("gru", 3, (5, 5), 3, 7, lengths=(7, 2, 0), seed=54, residual=True,
                   layer_norm=True, output="last")),
], lambda cfg: features(*default_case(cfg)), DEFAULT_SCHEDULE_ONLY | INFERENCE_ONLY,
   bounds=FLOAT64_BOUNDS)
@given(cfg=stacks(**FLOAT64_BOUNDS))
def test_float64_matches_numpy_tightly(cfg):
  """In float64 the stack matches the NumPy equations to 1e-10: no hidden float32 step."""
  record(cfg, dtype="float64")
  with jax.enable_x64(True):
    model, params, xs, lengths, state = build(cfg, dtype=jnp.float64)
    ys, final = fast_jit(functools.partial(model.apply, output=cfg["output"]))(
        params, xs, lengths, state)
    assert all(a.dtype == jnp.float64 for a in jax.tree.leaves((ys, final)))
    want_ys, want_final = run_numpy(cfg, model, params, xs, state)
    assert_close(ys, want_ys, 1e-10, "float64 outputs vs NumPy")
    assert_close(state_leaves(final, cfg), np_state_leaves(want_final), 1e-10,
                 "float64 state vs NumPy")


def bfloat16_case(cfg):
  return dict(cfg, layer_norm=False), ("depth-scan",), None


BF16_BOUNDS = dict(max_depth=4, max_width=32, max_batch=8, max_time=20)


@settings(max_examples=examples(3), **SETTINGS)
@covered_by([
    dict(cfg=stack("rnn-tanh", 5, (8,), 3, 9, lengths=(0, 9, 4), seed=61, bidirectional=True,
                   output="last")),
    dict(cfg=stack("rnn-relu", 6, (6, 6, 6), 2, 10, seed=62, random_state=True, residual=True,
                   output="all")),
    dict(cfg=stack("lstm", 3, (5, 5, 5), 2, 8, lengths=(8, 0), seed=63, random_state=True)),
    dict(cfg=stack("gru", 4, (7, 7), 3, 6, lengths=(6, 1, 0), seed=64, residual=True,
                   output="last")),
], lambda cfg: features(*bfloat16_case(cfg)), DEFAULT_SCHEDULE_ONLY | INFERENCE_ONLY | {
    "layer_norm": "left out, see the docstring"}, bounds=BF16_BOUNDS)
@given(cfg=stacks(**BF16_BOUNDS))
def test_bfloat16_compute_close_to_numpy(cfg):
  """compute_dtype=bfloat16 with float32 params: bf16 outputs, float32 state, within
  4e-2 of the largest magnitude of the float64 equations.

  Measured over 80 random stacks (depth <= 4, width <= 32, T <= 20) without layer norm,
  with bf16 matmuls accumulated in float32 and float32 gates and state: at most 0.023,
  95% below 0.012 (the rounding of the inputs and weights to bf16; the policy before,
  every step's maths in bf16, measured 0.029 and 0.015). Layer norm is left out: over
  widths of 1-4 units it divides the bf16-rounded projections by a spread of the same
  size as the rounding (up to 0.61 over 40 stacks), a limit of bf16 projections.
  """
  cfg, _, _ = bfloat16_case(cfg)
  record(cfg, dtype="bfloat16")
  model, params, xs, lengths, state = build(cfg, compute_dtype=jnp.bfloat16)
  ys, final = fast_jit(functools.partial(model.apply, output=cfg["output"]))(
      params, xs, lengths, state)
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(ys))
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(final))
  want_ys, want_final = run_numpy(cfg, model, params, xs, state)
  assert_close(ys, want_ys, 4e-2, "bf16 outputs vs NumPy")
  assert_close(state_leaves(final, cfg), np_state_leaves(want_final), 4e-2,
               "bf16 state vs NumPy")


# --------------------------------------------------------------------------------------
# The covering examples themselves (no compile).

def in_bounds(cfg, bounds):
  """Whether the strategy behind `bounds` could draw `cfg` (so e.g. a tolerance measured
  over that strategy applies to it)."""
  widths = cfg["widths"] + (cfg["input_size"],) if "widths" in cfg else (
      cfg["hidden"], cfg["features"])
  lengths = cfg["lengths"]
  return (len(cfg.get("widths", ())) <= bounds.get("max_depth", 1)
          and all(1 <= w <= bounds["max_width"] for w in widths)
          and 1 <= cfg["batch"] <= bounds["max_batch"] and 1 <= cfg["time"] <= bounds["max_time"]
          and (lengths is None or (len(lengths) == cfg["batch"]
                                   and all(0 <= n <= cfg["time"] for n in lengths)))
          and not (cfg.get("layer_norm") and cfg["kind"] == "rnn")
          and cfg.get("output", "sequence") in OUTPUTS)


def test_covering_examples_cover_everything():
  """Every property's explicit examples exercise every cell, schedule and option it
  applies to (FEATURES, or LAYER_FEATURES for the time scan), within its strategy's
  bounds; what one leaves out is named, and really left out."""
  properties = {name for name, f in globals().items()
                if name.startswith("test_") and is_hypothesis_test(f)}
  assert set(COVERAGE) == properties, "every property runs covering examples"
  for name, c in COVERAGE.items():
    universe, left_out = set(c["universe"]), set(c["left_out"])
    assert left_out <= universe, (name, "unknown names", sorted(left_out - universe))
    covered = set()
    for kw in c["cases"]:
      assert in_bounds(kw["cfg"], c["bounds"]), (name, "outside the strategy", kw)
      exercised = c["exercised"](**kw)
      assert exercised <= universe, (name, "unknown names", sorted(exercised - universe))
      covered |= exercised
    assert not universe - left_out - covered, (name, "not covered",
                                               sorted(universe - left_out - covered))
    assert not covered & left_out, (name, "covered, but listed as left out",
                                    sorted(covered & left_out))
