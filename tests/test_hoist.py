"""The input projection hoisted out of the time scan (`scan_layer(hoist=True)`) against
the projection inside it and the Python loop; the measured default (`loops/tuning.py`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from deeprnn_jax._src.cells import make_cell
from deeprnn_jax._src.layers import dropout as drop_lib
from deeprnn_jax._src.layers import precision
from deeprnn_jax._src.loops import tuning
from deeprnn_jax._src.loops.scan import loop_layer, scan_layer

from helpers import assert_trees_close, randomize

T, B, F, H = 6, 3, 4, 5
KINDS = [("rnn", {}), ("lstm", {}), ("gru", {}),
         ("lstm", {"layer_norm": True}), ("gru", {"layer_norm": True}),
         ("lstm", {"proj_size": 2})]


def setup(kind, kw, dtype=jnp.float32):
  cell = make_cell(kind, H, **kw)
  params = randomize(cell.init(jax.random.key(1), F), jax.random.key(2))
  params = jax.tree.map(lambda a: a.astype(dtype), params)
  xs = jax.random.normal(jax.random.key(3), (T, B, F), dtype)
  carry = randomize(cell.initial_carry(B, dtype), jax.random.key(4))
  return cell, params, xs, carry


def loss(cell, lengths, reverse, hoist, unroll=1):
  """A scalar reading every output and every part of the final carry, non-linearly."""
  def f(params, xs, carry):
    final, ys = scan_layer(cell, params, xs, carry, lengths, reverse=reverse, unroll=unroll,
                           fast_grad=False, hoist=hoist)
    return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(final))
  return f


@pytest.mark.parametrize("kind,kw", KINDS)
@pytest.mark.parametrize("lengths,reverse,unroll", [(None, False, 1), ((6, 2, 0), True, 4)])
def test_hoisted_equals_in_loop_and_the_loop(kind, kw, lengths, reverse, unroll):
  cell, params, xs, carry = setup(kind, kw)
  lengths = None if lengths is None else jnp.asarray(lengths, jnp.int32)
  got = scan_layer(cell, params, xs, carry, lengths, reverse=reverse, unroll=unroll,
                   fast_grad=False, hoist=True)
  want = scan_layer(cell, params, xs, carry, lengths, reverse=reverse, fast_grad=False,
                    hoist=False)
  assert_trees_close(got, want, 1e-6, 1e-6)
  assert_trees_close(got, loop_layer(cell, params, xs, carry, lengths, reverse=reverse),
                     1e-5, 1e-5)
  args = (params, xs, carry)
  grads = jax.grad(loss(cell, lengths, reverse, True, unroll), argnums=(0, 1, 2))(*args)
  want_grads = jax.grad(loss(cell, lengths, reverse, False), argnums=(0, 1, 2))(*args)
  assert_trees_close(grads, want_grads, 1e-5, 1e-5)


@pytest.mark.parametrize("kind,kw", [("lstm", {}), ("gru", {})])
def test_hoisted_check_grads_against_finite_differences(kind, kw):
  with jax.enable_x64(True):
    cell, params, xs, carry = setup(kind, kw, jnp.float64)
    lengths = jnp.asarray([6, 3, 1], jnp.int32)
    check_grads(loss(cell, lengths, False, True), (params, xs, carry), order=1,
                modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_wrapped_cells_hoist_their_own_projection(kind):
  """The wrappers rewrite project and recur together (recurrent dropout, a carry kept in
  another dtype), so hoisting runs the wrapped maths."""
  cell, params, xs, carry = setup(kind, {})
  mask = drop_lib.sequence_mask(jax.random.key(5), 0.5, B, H, jnp.float32)
  dropped, dparams = drop_lib.with_recurrent_mask(cell, params, mask)
  assert_trees_close(scan_layer(dropped, dparams, xs, carry, hoist=True),
                     loop_layer(dropped, dparams, xs, carry), 1e-5, 1e-5)
  bf16_carry = jax.tree.map(lambda a: a.astype(jnp.bfloat16), carry)
  kept = precision.keep_carry_dtype(cell, jnp.float32, bf16_carry)
  final, ys = scan_layer(kept, params, xs, bf16_carry, hoist=True)
  want_final, want_ys = loop_layer(kept, params, xs, bf16_carry)
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(final))
  assert_trees_close((final, ys), (want_final, want_ys), 1e-2, 1e-2)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bf16_hoisted_stays_bf16(kind):
  cell, params, xs, carry = setup(kind, {}, jnp.bfloat16)
  final, ys = scan_layer(cell, params, xs, carry, fast_grad=False, hoist=True)
  assert ys.dtype == jnp.bfloat16
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(final))
  want = scan_layer(cell, params, xs, carry, fast_grad=False, hoist=False)[1]
  np.testing.assert_allclose(np.asarray(ys, np.float32), np.asarray(want, np.float32),
                             atol=2e-2)


def _projects_before_the_loop(cell, params, xs, carry, **kw):
  """Whether the traced layer runs a dot on all [T, B, F] inputs outside its scan."""
  jaxpr = jax.make_jaxpr(lambda p, x, c: scan_layer(cell, p, x, c, fast_grad=False, **kw))(
      params, xs, carry).jaxpr
  return any(e.primitive.name == "dot_general" and e.invars[0].aval.shape[:2] == (T, B)
             for e in jaxpr.eqns)


def test_the_default_follows_the_nearest_measurement(monkeypatch):
  cell, params, xs, carry = setup("gru", {})
  backend = jax.default_backend()
  monkeypatch.setitem(tuning.tables(), "hoist", [
      {"backend": backend, "speedups": {"gru": {"5,4": 1.3, "5,40": 0.8}}}])
  assert _projects_before_the_loop(cell, params, xs, carry)  # (5, 4) measured 1.3x
  assert not _projects_before_the_loop(cell, params, xs, carry, hoist=False)
  wide = jnp.zeros((T, B, 30))
  wide_params = cell.init(jax.random.key(1), 30)
  assert not _projects_before_the_loop(cell, wide_params, wide, carry)  # near (5, 40): 0.8x
  assert _projects_before_the_loop(cell, wide_params, wide, carry, hoist=True)
  monkeypatch.setitem(tuning.tables(), "hoist", [
      {"backend": backend, "speedups": {"gru": {"5,4": 1.04}}}])  # within the margin: in the loop
  assert not _projects_before_the_loop(cell, params, xs, carry)
  lstm, lstm_params, _, lstm_carry = setup("lstm", {})  # a cell never measured
  assert not _projects_before_the_loop(lstm, lstm_params, xs, lstm_carry)


def test_hoist_choice_reads_the_nearest_measured_point(monkeypatch):
  monkeypatch.setitem(tuning.tables(), "hoist", [
      {"backend": "test", "speedups": {"gru": {"64,64": 0.9, "64,256": 1.3}}},
      {"backend": "test", "speedups": {"gru": {"64,64": 1.1, "5,20": 1.2}}}])
  speedup = lambda kind, H, F: tuning.speedup("hoist", kind, "test", (H, F))
  assert speedup("gru", 64, 64) == pytest.approx((0.9 * 1.1) ** 0.5)
  assert speedup("gru", 64, 200) == 1.3
  assert speedup("gru", 4, 32) == 1.2
  assert speedup("lstm", 64, 64) == 0
  assert tuning.prefers_hoisted("gru", 64, 300, backend="test")
  assert not tuning.prefers_hoisted("gru", 64, 60, backend="test")


def test_committed_table_hoists_the_seed_grus_first_layer_only():
  """README: on the CPU the seed model's first layer (32 into 5) is hoisted, its second
  (5 into 5) and the strong preset's GRU (64 into 64) are not."""
  assert tuning.prefers_hoisted("gru", 5, 32, backend="cpu")
  assert not tuning.prefers_hoisted("gru", 5, 5, backend="cpu")
  assert not tuning.prefers_hoisted("gru", 64, 64, backend="cpu")
