"""Rematerialisation (`remat=True`, `remat_scan_layer`): same numbers, less memory."""

import jax
import jax.numpy as jnp
import pytest

import deeprnn_jax as drnn
from deeprnn_jax._src.cells import make_cell
from deeprnn_jax._src.loops.scan import remat_chunk, remat_scan_layer, scan_layer

from helpers import assert_trees_close, randomize


def test_remat_chunk_divides_time_near_its_square_root():
  assert [remat_chunk(t) for t in (1, 7, 12, 100, 2000)] == [1, 1, 3, 10, 40]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_remat_layer_equals_scan_layer(kind):
  cell = make_cell(kind, 5)
  params = randomize(cell.init(jax.random.key(0), 4), jax.random.key(1))
  xs = jax.random.normal(jax.random.key(2), (12, 3, 4))
  carry = randomize(cell.initial_carry(3), jax.random.key(3))
  for lengths, reverse in [(None, False), (jnp.asarray([12, 5, 0], jnp.int32), True)]:
    def loss(run, chunk=None):
      def f(p, x, c):
        kw = {} if chunk is None else {"chunk": chunk}
        final, ys = run(cell, p, x, c, lengths, reverse=reverse, **kw)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a * a) for a in jax.tree.leaves(final))
      return jax.value_and_grad(f, argnums=(0, 1, 2))

    want = loss(scan_layer)(params, xs, carry)
    for chunk in (None, 4):
      assert_trees_close(loss(remat_scan_layer, chunk)(params, xs, carry), want, 1e-6, 1e-6)


def test_remat_chunk_must_divide_time():
  cell = make_cell("rnn", 3)
  params = cell.init(jax.random.key(0), 2)
  with pytest.raises(ValueError, match="chunk: expected a positive int dividing the time"):
    remat_scan_layer(cell, params, jnp.ones((10, 1, 2)), cell.initial_carry(1), chunk=3)


def test_remat_stack_saves_memory_and_keeps_gradients():
  """The compiled gradient's temporaries shrink; values and gradients stay the same."""
  xs = jax.random.normal(jax.random.key(0), (4, 64, 3))
  lengths = jnp.asarray([64, 30, 1, 50], jnp.int32)
  out = {}
  for remat in (False, True):
    model = drnn.stacked_rnn("lstm", 3, (16, 16, 16), remat=remat)
    params = model.init(jax.random.key(1))
    f = jax.jit(jax.value_and_grad(lambda p: jnp.sum(jnp.sin(model.apply(p, xs, lengths)[0]))))
    compiled = f.lower(params).compile()
    out[remat] = (compiled(params), compiled.memory_analysis().temp_size_in_bytes)
  assert_trees_close(out[True][0], out[False][0], 1e-5, 1e-5)
  assert out[True][1] < 0.5 * out[False][1], (out[True][1], out[False][1])


def test_remat_flag_is_checked():
  with pytest.raises(TypeError, match="remat"):
    drnn.stacked_rnn("lstm", 3, (4,), remat="yes")
