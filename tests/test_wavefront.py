"""The wavefront schedule (`wavefront.py`): the layer-by-layer numbers in T + n - 1 steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from deeprnn_jax._src.cells import make_cell
from deeprnn_jax._src.loops.scan import scan_layer
from wavefront_reference import wavefront_group, wavefront_group_reference

import np_random
from helpers import assert_trees_close

KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]
IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
H = 4


def make_group(kind, nl, n, T, B, lengths=True, masks=True, seed=0):
  """A cell, n layers' params, inputs, non-zero carries, lengths, dropout masks and a
  mixed residual pattern; random numbers from NumPy, so that nothing compiles here."""
  cell = make_cell(kind, H, nonlinearity=nl)
  one = jax.eval_shape(lambda k: cell.init(k, H), jax.random.key(0))
  params = np_random.like(jax.tree.map(lambda a: jax.ShapeDtypeStruct((n,) + a.shape, a.dtype),
                                       one), seed)
  h = np_random.normal((T, B, H), seed + 1)
  carries = np_random.like(jax.eval_shape(lambda: jax.tree.map(
      lambda a: jnp.stack([a] * n), cell.initial_carry(B))), seed + 2)
  lens = None
  if lengths:  # 0 and T among them where B allows
    lens = jnp.asarray([T, 0, T // 2][:B] if B > 1 else [T - 1], jnp.int32)
  in_masks = None
  if masks:
    rate = 0.3
    keep = np.random.default_rng(seed + 3).random((n, T, B, H)) >= rate
    in_masks = jnp.asarray(np.where(keep, 1 / (1 - rate), 0.0), jnp.float32)
  residual_from = jnp.asarray(np.arange(n) % 2 == 1)  # mixed: layers 1, 3, ... add their input
  return cell, params, h, carries, lens, in_masks, residual_from


def per_layer_loop(cell, params, h, carries, lengths=None, *, in_masks=None,
                   residual_from=None, keep_all=False):
  """The layer-by-layer schedule: one `scan_layer` per layer, bottom first."""
  n = jax.tree.leaves(params)[0].shape[0]
  finals, ys = [], []
  for j in range(n):
    p, c = jax.tree.map(lambda a: a[j], (params, carries))
    x = h if in_masks is None else h * in_masks[j]
    c, y = scan_layer(cell, p, x, c, lengths)
    if residual_from is not None:
      y = y + jnp.where(residual_from[j], h, 0)
    finals.append(c)
    ys.append(y)
    h = y
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *finals)
  return h, stacked, (jnp.stack(ys) if keep_all else None)


def run_all(fn, group, keep_all=True, **kw):
  cell, params, h, carries, lens, in_masks, residual_from = group
  return fn(cell, params, h, carries, lens, in_masks=in_masks, residual_from=residual_from,
            keep_all=keep_all, **kw)


def schedules_jitted(group):
  """The per-layer loop and the wavefront with and without keep_all, under one jit (one
  compile instead of many small eager ones)."""
  cell, rest = group[0], group[1:]

  def run(r):
    group = (cell,) + r
    return (run_all(per_layer_loop, group), run_all(wavefront_group, group),
            run_all(wavefront_group, group, keep_all=False))

  return jax.jit(run)(rest)


SHAPES = [(n, T, B) for n in (2, 3, 5) for T in (1, 2, 7) for B in (1, 3)]


@pytest.mark.parametrize("k", range(len(KINDS)), ids=IDS)
def test_wavefront_equals_layer_by_layer(k):
  """Every (n, T, B) over the four cells, with and without lengths, masks and residuals:
  the outputs, final carries and per-layer outputs of the per-layer loop."""
  kind, nl = KINDS[k]
  for i, (n, T, B) in enumerate(SHAPES[k::len(KINDS)]):  # each shape once, for time
    extras = i % 2 == 0  # lengths, masks, residuals on every other shape
    group = make_group(kind, nl, n, T, B, lengths=extras, masks=extras, seed=i)
    if not extras:
      group = group[:-1] + (None,)
    want, got, (top, finals, none) = schedules_jitted(group)
    assert_trees_close(got, want)
    assert none is None
    assert_trees_close((top, finals), want[:2])


@pytest.mark.parametrize("kind,nl", KINDS, ids=IDS)
def test_wavefront_equals_its_python_reference(kind, nl):
  for seed, (n, T, B) in enumerate([(3, 7, 3), (5, 2, 1)]):
    group = make_group(kind, nl, n, T, B, seed=seed)
    assert_trees_close(run_all(wavefront_group, group),
                       run_all(wavefront_group_reference, group))


@pytest.mark.parametrize("kind,nl", KINDS, ids=IDS)
def test_wavefront_gradients_equal_layer_by_layer(kind, nl):
  cell, params, h, carries, lens, in_masks, residual_from = make_group(kind, nl, 3, 7, 3)

  def loss(fn):
    def f(p, x, c):
      top, finals, ys = fn(cell, p, x, c, lens, in_masks=in_masks,
                           residual_from=residual_from, keep_all=True)
      return (jnp.sum(jnp.sin(top)) + jnp.sum(jnp.cos(ys))
              + sum(jnp.sum(a * a) for a in jax.tree.leaves(finals)))
    return jax.jit(jax.grad(f, argnums=(0, 1, 2)))(params, h, carries)

  assert_trees_close(loss(wavefront_group), loss(per_layer_loop))


@pytest.mark.parametrize("kind,nl", KINDS, ids=IDS)
def test_wavefront_jit_equals_eager_and_padding_changes_nothing(kind, nl):
  cell, params, h, carries, lens, in_masks, _ = make_group(kind, nl, 3, 7, 3)
  pad = jnp.arange(7)[:, None, None] >= lens[None, :, None]  # [T, B, 1]
  noisy = jnp.where(pad, 1e3 * np_random.normal(h.shape, 9), h)

  def run(x):  # no residual here: it would carry the padded x upward
    top, finals, ys = wavefront_group(cell, params, x, carries, lens, in_masks=in_masks,
                                      keep_all=True, unroll=2)
    return jnp.where(pad, 0, top), finals, jnp.where(pad[None], 0, ys), top

  eager = run(h)
  assert_trees_close(jax.jit(run)(h), eager)
  assert_trees_close(jax.jit(run)(noisy)[:3], eager[:3])
  assert float(jnp.max(jnp.abs(jnp.where(pad, eager[3], 0)))) == 0.0


STACK_CASES = [  # kind, nonlinearity, options, output (dropout, slow to compile: twice)
    ("lstm", None, {"dropout": 0.3, "residual": True}, "all"),
    ("gru", None, {"dropout": 0.25, "variational": True, "residual": True}, "last"),
    ("rnn", "relu", {}, "sequence"),
    ("rnn", "tanh", {"residual": True, "unroll": 2}, "all"),
]


@pytest.mark.parametrize("kind,nl,options,output", STACK_CASES,
                         ids=[c[0] + "-" + c[3] for c in STACK_CASES])
def test_stack_wavefront_equals_layer_schedule_and_reference(kind, nl, options, output):
  """A mixed-width stack (3 -> 5, 5, 5, 2, 2: groups of 1, 2, 1 and 1 layers) with
  lengths, a non-zero initial state, dropout from one key and residuals."""
  models = {s: drnn.stacked_rnn(kind, 3, (5, 5, 5, 2, 2), nonlinearity=nl, schedule=s,
                                **options) for s in ("layer", "wavefront")}
  params = np_random.params(models["layer"])
  xs = np_random.normal((3, 4, 3), 1)
  lengths = jnp.asarray([4, 0, 3], jnp.int32)
  init = np_random.like(models["layer"].initial_state(3), 2)
  kw = dict(initial_state=init, train=True, key=jax.random.key(7), output=output)
  got = jax.jit(models["wavefront"].apply, static_argnames=("train", "output"))(
      params, xs, lengths, **kw)
  want = jax.jit(models["layer"].apply, static_argnames=("train", "output"))(
      params, xs, lengths, **kw)
  assert_trees_close(got, want)
  assert_trees_close(got, models["wavefront"].apply_reference(params, xs, lengths, **kw))


def test_stack_wavefront_keeps_the_state_dtype_under_bfloat16():
  models = [drnn.stacked_rnn("lstm", 4, (4, 4, 4), compute_dtype=jnp.bfloat16, schedule=s)
            for s in ("layer", "wavefront")]
  params = np_random.params(models[0])
  xs = np_random.normal((2, 5, 4), 1)
  (ys_l, st_l), (ys_w, st_w) = (jax.jit(m.apply)(params, xs) for m in models)
  assert ys_w.dtype == jnp.bfloat16
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(st_w))
  assert_trees_close((ys_w, st_w), (ys_l, st_l), 2e-2, 2e-2)


def test_schedule_is_checked():
  with pytest.raises(ValueError, match=r"schedule: expected one of \('layer', 'wavefront', 'pipeline'\) "
                                       r"or a Schedule such as drnn.pipeline\(...\), got 'foo'"):
    drnn.stacked_rnn("lstm", 3, (4, 4), schedule="foo")
  for option, value in [("bidirectional", True), ("recurrent_dropout", 0.2), ("remat", True)]:
    with pytest.raises(ValueError, match=f"schedule: 'wavefront' .*{option}.*got "
                                         f"{option}={value}"):
      drnn.stacked_rnn("lstm", 3, (4, 4), schedule="wavefront", **{option: value})
  assert drnn.stacked_rnn("gru", 3, (4, 4), schedule="wavefront").schedule == "wavefront"
