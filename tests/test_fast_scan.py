"""The custom-JVP time scan (loops/custom_jvp.py) against autodiff of the plain scan and the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from deeprnn_jax._src.cells import gru_cell, lstm_cell, make_cell, rnn_cell
from deeprnn_jax._src.core import dtypes
from deeprnn_jax._src.layers import dropout as drop_lib
from deeprnn_jax._src.layers import precision
from deeprnn_jax._src.loops import custom_jvp as fast_scan
from deeprnn_jax._src.loops.scan import loop_layer, scan_layer

from helpers import assert_trees_close, randomize

T, B, F, H = 6, 3, 4, 5
KINDS = [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("gru", {})]
RULES = [rnn_cell.RULES["tanh"], rnn_cell.RULES["relu"], lstm_cell.RULE, gru_cell.RULE]


def setup(kind, kw, dtype=jnp.float32):
  cell = make_cell(kind, H, **kw)
  params = randomize(cell.init(jax.random.key(1), F), jax.random.key(2))
  params = jax.tree.map(lambda a: a.astype(dtype), params)
  xs = jax.random.normal(jax.random.key(3), (T, B, F), dtype)
  carry = randomize(cell.initial_carry(B, dtype), jax.random.key(4))
  return cell, params, xs, carry


def loss(cell, lengths, reverse, fast):
  """A scalar reading every output and every part of the final carry, non-linearly."""
  def f(params, xs, carry):
    final, ys = scan_layer(cell, params, xs, carry, lengths, reverse=reverse, fast_grad=fast)
    return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(final))
  return f


@pytest.mark.parametrize("kind,kw", KINDS)
def test_plain_cells_declare_their_rule(kind, kw):
  cell, params, xs, carry = setup(kind, kw)
  assert cell.fast_rule is RULES[KINDS.index((kind, kw))]
  assert fast_scan.applies(cell.fast_rule, params, carry, xs[0])


@pytest.mark.parametrize("kind,kw", KINDS)
def test_changed_maths_has_no_rule(kind, kw):
  """Cells computing something else fall back to the plain scan: a step in another dtype,
  recurrent dropout, layer norm; and a rule never runs on mixed dtypes."""
  cell, params, xs, carry = setup(kind, kw)
  bf16 = precision.keep_carry_dtype(cell, jnp.bfloat16, carry)  # float32 carry
  assert bf16.fast_rule is None
  mask = drop_lib.sequence_mask(jax.random.key(5), 0.5, B, H, jnp.float32)
  dropped, _ = drop_lib.with_recurrent_mask(cell, params, mask)
  assert dropped.fast_rule is None
  mixed = dtypes.cast_params(params, jnp.bfloat16, jnp.float32)
  assert not fast_scan.applies(cell.fast_rule, mixed, carry, xs[0])
  if kind != "rnn":
    assert make_cell(kind, H, layer_norm=True).fast_rule is None


@pytest.mark.parametrize("kind,kw", KINDS)
@pytest.mark.parametrize("lengths,reverse", [(None, False), ((6, 2, 0), True)])
def test_values_and_gradients_equal_the_plain_scan(kind, kw, lengths, reverse):
  cell, params, xs, carry = setup(kind, kw)
  lengths = None if lengths is None else jnp.asarray(lengths, jnp.int32)
  got = scan_layer(cell, params, xs, carry, lengths, reverse=reverse, fast_grad=True)
  want = scan_layer(cell, params, xs, carry, lengths, reverse=reverse, fast_grad=False)
  assert_trees_close(got, want, 1e-6, 1e-6)
  if not reverse:
    assert_trees_close(got, loop_layer(cell, params, xs, carry, lengths), 1e-5, 1e-5)
  args = (params, xs, carry)
  grads = jax.grad(loss(cell, lengths, reverse, True), argnums=(0, 1, 2))(*args)
  want_grads = jax.grad(loss(cell, lengths, reverse, False), argnums=(0, 1, 2))(*args)
  assert_trees_close(grads, want_grads, 1e-5, 1e-5)
  # Forward mode is the rule itself: it must agree with forward mode through the plain scan.
  tangents = randomize(args, jax.random.key(6))
  jvp = jax.jvp(loss(cell, lengths, reverse, True), args, tangents)
  want_jvp = jax.jvp(loss(cell, lengths, reverse, False), args, tangents)
  assert_trees_close(jvp, want_jvp, 1e-5, 1e-5)


@pytest.mark.parametrize("kind,kw", KINDS[:1] + KINDS[2:])
def test_check_grads_against_finite_differences(kind, kw):
  """Forward and reverse mode in float64 against finite differences, with lengths."""
  with jax.enable_x64(True):
    cell, params, xs, carry = setup(kind, kw, jnp.float64)
    lengths = jnp.asarray([6, 3, 1], jnp.int32)
    check_grads(loss(cell, lengths, False, True), (params, xs, carry), order=1,
                modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


def test_unroll_keeps_values_and_gradients():
  cell, params, xs, carry = setup("lstm", {})
  lengths = jnp.asarray([5, 6, 2], jnp.int32)
  f1 = loss(cell, lengths, False, True)

  def f3(p, x, c):
    final, ys = scan_layer(cell, p, x, c, lengths, unroll=3, fast_grad=True)
    return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(final))

  assert_trees_close(jax.value_and_grad(f3)(params, xs, carry),
                     jax.value_and_grad(f1)(params, xs, carry), 1e-6, 1e-6)


@pytest.mark.parametrize("kind,kw", KINDS[2:])
def test_bf16_stays_bf16(kind, kw):
  cell, params, xs, carry = setup(kind, kw, jnp.bfloat16)
  assert fast_scan.applies(cell.fast_rule, params, carry, xs[0])
  final, ys = scan_layer(cell, params, xs, carry, fast_grad=True)
  assert ys.dtype == jnp.bfloat16
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(final))
  grads = jax.grad(lambda p: jnp.sum(
      scan_layer(cell, p, xs, carry, fast_grad=True)[1].astype(jnp.float32)))(params)
  assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))
  want = scan_layer(cell, params, xs, carry, fast_grad=False)[1]
  np.testing.assert_allclose(np.asarray(ys, np.float32), np.asarray(want, np.float32),
                             atol=2e-2)
