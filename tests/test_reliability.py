"""What real programs hit (issue 35): non-finite padding, `jax.export` of every output,
errors on foreign arrays and wrong dtypes, one behaviour for lengths eager and jitted, the
carry's dtype, and the cross-CPU tolerance of the recorded numbers."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from test_golden import assert_close_across_cpus

B, T, F = 3, 6, 5
LENGTHS = np.array([6, 3, 0], np.int32)  # a full row, a padded one, an empty one
# (name, stacked_rnn options, train): every wrapper, schedule and time loop that reads xs
STACKS = (
    ("plain", {}, False),
    ("bidirectional", {"bidirectional": True}, False),
    ("wavefront", {"schedule": "wavefront"}, False),
    ("dropout-residual-recurrent", {"dropout": 0.3, "residual": True,
                                    "recurrent_dropout": 0.2}, True),
    ("remat-unroll", {"remat": True, "unroll": 2}, False),
)
CELLS = ("rnn", "lstm", "gru")


def _padded(fill, seed=0):
  """xs [B, T, F] with every step past LENGTHS set to `fill`."""
  xs = np.random.default_rng(seed).standard_normal((B, T, F)).astype(np.float32)
  xs[np.arange(T)[None, :] >= LENGTHS[:, None]] = fill
  return jnp.asarray(xs)


def _grads(model, params, xs, train, output="sequence", reference=False):
  key = jax.random.key(1) if train else None
  run = model.apply_reference if reference else model.apply

  def loss(params, xs):
    ys, state = run(params, xs, jnp.asarray(LENGTHS), train=train, key=key, output=output)
    leaves = [jnp.sum(a.astype(jnp.float32) ** 2) for a in jax.tree.leaves((ys, state))]
    return sum(leaves[1:], leaves[0]), ys

  return jax.grad(loss, (0, 1), has_aux=True)(params, xs)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name, options, train", STACKS, ids=[s[0] for s in STACKS])
def test_non_finite_padding_changes_nothing(cell, name, options, train):
  """NaN and inf past `lengths` give the very numbers zero padding gives: outputs, final
  states, parameter gradients and input gradients (zero in the padding)."""
  model = drnn.stacked_rnn(cell, F, (4, 4, 4), **options)
  params = model.init(jax.random.key(0))
  grads = jax.jit(_grads, static_argnums=(0, 3))
  (want_p, want_x), want_ys = grads(model, params, _padded(0.0), train)
  for fill in (np.nan, np.inf, -np.inf, 3e38):
    (got_p, got_x), got_ys = grads(model, params, _padded(fill), train)
    for a, b in zip(jax.tree.leaves((got_p, got_x, got_ys)),
                    jax.tree.leaves((want_p, want_x, want_ys))):
      assert np.isfinite(np.asarray(a)).all(), f"{fill} in the padding reached {name}"
      np.testing.assert_array_equal(a, b, err_msg=f"padding {fill}")
  pad = np.arange(T)[None, :] >= LENGTHS[:, None]
  np.testing.assert_array_equal(np.asarray(want_x)[pad], 0.0)


def test_non_finite_padding_in_the_reference_tbptt_and_last_output():
  model = drnn.stacked_rnn("gru", F, (4, 4), layer_norm=True)
  params = model.init(jax.random.key(0))
  want = _grads(model, params, _padded(0.0), False, output="last", reference=True)
  got = _grads(model, params, _padded(np.nan), False, output="last", reference=True)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)

  def tbptt_loss(params, xs):
    ys, _ = drnn.tbptt_apply(model, params, xs, 4, jnp.asarray(LENGTHS))
    return jnp.sum(ys ** 2)

  tb = jax.jit(jax.grad(tbptt_loss, (0, 1)))
  for a, b in zip(jax.tree.leaves(tb(params, _padded(np.nan))),
                  jax.tree.leaves(tb(params, _padded(0.0)))):
    assert np.isfinite(np.asarray(a)).all()
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------
# jax.export: every output type serializes, with symbolic batch and time, and
# deserializes in a process that has imported the library.

CALL_EXPORTED = """
import sys
import numpy as np
import jax
import deeprnn_jax  # registers the library's NamedTuples for deserialization
with open(sys.argv[1], "rb") as f:
  exported = jax.export.deserialize(bytearray(f.read()))
inputs = np.load(sys.argv[2], allow_pickle=False)
args = [inputs[k] for k in sorted(inputs.files)]
params = jax.tree.unflatten(exported.in_tree.children()[0].children()[0], args[:-2])
out = exported.call(params, args[-2], args[-1])
print(type(out[1][0]).__name__)
np.savez(sys.argv[3], *jax.tree.leaves(out))
"""


@pytest.mark.parametrize("cell, bidirectional", [("lstm", False), ("lstm", True),
                                                 ("gru", False)])
def test_apply_exports_with_symbolic_batch_and_time(cell, bidirectional, tmp_path):
  model = drnn.stacked_rnn(cell, F, (4, 4), bidirectional=bidirectional)
  params = model.init(jax.random.key(0))
  b, t = jax.export.symbolic_shape("b, t")
  exported = jax.export.export(jax.jit(model.apply))(
      params, jax.ShapeDtypeStruct((b, t, F), jnp.float32), jax.ShapeDtypeStruct((b,), jnp.int32))
  path = tmp_path / "apply.jaxexport"
  path.write_bytes(exported.serialize())
  xs = _padded(0.0, seed=3)[:2, :5]
  lengths = np.array([5, 2], np.int32)
  leaves = jax.tree.leaves(params)
  np.savez(tmp_path / "in.npz", **{f"a{i:03d}": np.asarray(a) for i, a in enumerate(leaves)},
           **{"y_xs": np.asarray(xs), "z_lengths": lengths})
  done = subprocess.run([sys.executable, "-c", CALL_EXPORTED, str(path), str(tmp_path / "in.npz"),
                         str(tmp_path / "out.npz")], capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-2000:]
  want_type = "tuple" if bidirectional else ("LSTMState" if cell == "lstm" else "ArrayImpl")
  assert done.stdout.split()[-1] == want_type
  got = np.load(tmp_path / "out.npz")
  want = jax.tree.leaves(model.apply(params, xs, lengths))
  assert len(got.files) == len(want)
  for i, w in enumerate(want):
    np.testing.assert_allclose(got[f"arr_{i}"], w, rtol=1e-5, atol=1e-6)


def test_gradient_norms_export():
  norms = drnn.diagnostics.GradientNorms(*(jnp.ones(2),) * 4, None)
  exported = jax.export.export(jax.jit(lambda x: norms._replace(loss=x)))(jnp.ones(()))
  again = jax.export.deserialize(exported.serialize())
  assert type(again.call(jnp.ones(()))) is drnn.diagnostics.GradientNorms


# ---------------------------------------------------------------------------------------
# Lengths: eager raises, jit clamps (documented), drnn.checked raises under jit.

@pytest.mark.parametrize("bidirectional", (False, True))
def test_out_of_range_lengths_eager_jit_and_checked(bidirectional):
  model = drnn.stacked_rnn("gru", F, (4,), bidirectional=bidirectional)
  params = model.init(jax.random.key(0))
  xs, bad = _padded(0.5), jnp.array([T + 3, -2, 2], jnp.int32)
  with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 6\]"):
    model.apply(params, xs, bad)
  clamped = jnp.array([T, 0, 2], jnp.int32)
  for output in ("sequence", "last"):
    jitted = jax.jit(model.apply, static_argnames="output")(params, xs, bad, output=output)
    for a, b in zip(jax.tree.leaves(jitted),
                    jax.tree.leaves(model.apply(params, xs, clamped, output=output))):
      np.testing.assert_array_equal(a, b)
  checked = drnn.checked(model.apply, static_argnames=("output",))
  with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 6\] .*got min -2 "
                                       r"and max 9"):
    checked(params, xs, bad)
  for a, b in zip(jax.tree.leaves(checked(params, xs, clamped, output="last")),
                  jax.tree.leaves(model.apply(params, xs, clamped, output="last"))):
    np.testing.assert_array_equal(a, b)


def test_tbptt_lengths_follow_the_same_rule():
  model = drnn.stacked_rnn("lstm", F, (4,))
  params = model.init(jax.random.key(0))
  with pytest.raises(ValueError, match="lengths: expected values in"):
    drnn.tbptt_apply(model, params, _padded(0.0), 4, jnp.array([7, 1, 1]))
  checked = drnn.checked(lambda p, x, n: drnn.tbptt_apply(model, p, x, 4, n))
  with pytest.raises(ValueError, match="lengths: expected values in"):
    checked(params, _padded(0.0), jnp.array([7, 1, 1]))


X64_STEP = """
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import deeprnn_jax as drnn
model = drnn.stacked_rnn("lstm", 3, (4, 4))
params = model.init(jax.random.key(0), jnp.float64)
x = jnp.ones((2, 3), jnp.float64)
try:
  model.step(params, model.initial_state(2), x)
  raise SystemExit("a float32 carry ran silently under float64 params")
except TypeError as e:
  assert "state[0].h: expected a state in float64" in str(e), e
state, y = model.step(params, model.initial_state(2, jnp.float64), x)
assert y.dtype == jnp.float64 and state[1].c.dtype == jnp.float64, (y.dtype, state)
ys, final = model.apply(params, x[:, None])
assert final[0].h.dtype == jnp.float64
print("ok")
"""


def test_float64_step_needs_a_float64_state():
  done = subprocess.run([sys.executable, "-c", X64_STEP], capture_output=True, text=True)
  assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr[-2000:]


def test_bf16_state_under_bf16_compute_stays_bf16():
  model = drnn.stacked_rnn("lstm", F, (4,), compute_dtype=jnp.bfloat16)
  params = model.init(jax.random.key(0))
  half = model.initial_state(B, jnp.bfloat16)
  state, _ = model.step(params, half, _padded(0.0)[:, 0].astype(jnp.bfloat16))
  assert state[0].h.dtype == jnp.bfloat16
  with pytest.raises(TypeError, match="initial_state.*float32"):
    drnn.stacked_rnn("lstm", F, (4,)).apply(params, _padded(0.0), initial_state=half)


# ---------------------------------------------------------------------------------------
# The golden comparison's tolerance: it passes the other CPU's rounding, fails a bug.

def test_cross_cpu_tolerance_passes_rounding_and_catches_a_wrong_change():
  want = np.array([27.0, -0.3981937, 1.5, 1e-3], np.float32)
  amd = np.array([27.000204, -0.3981837, 1.500012, 1.0001e-3], np.float32)
  assert_close_across_cpus(amd, want)
  for wrong in (want * 1.001, want + np.array([0, 0.01, 0, 0], np.float32),
                want + np.array([0, 0, 0, 5e-3], np.float32)):
    with pytest.raises(AssertionError):
      assert_close_across_cpus(wrong.astype(np.float32), want)
