"""The cuDNN time loop (`time_loop="cudnn"`): its weight packing and its plumbing.

Off a GPU the loop runs with `jax.experimental.rnn.lstm_ref`, JAX's reference for the
cuDNN call on the same flat weights (`cudnn.reference_kernel`): the stack's values and
gradients then equal the scan's, so the packing (transposes, gate order, biases), the
lengths, the backward direction and the carries are right. On a GPU the last test runs
cuDNN itself against the scan.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from jax.experimental import rnn

from deeprnn_jax._src.loops import cudnn

import helpers

REF = drnn.cudnn_time_loop(cudnn.reference_kernel)
TOL = dict(rtol=2e-5, atol=2e-6)


def test_pack_and_unpack_are_inverse_and_follow_cudnn_layout():
  F, H = 3, 4
  params = helpers.randomize(drnn.lstm(H).init(jax.random.key(0), F), jax.random.key(1))
  flat = cudnn.pack_weights(params)
  assert flat.shape == (jax.experimental.rnn.get_num_params_in_lstm(F, H, 1, False),)
  W_ih, W_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, F, H, 1, False)  # cuDNN's own view
  back = {"w_ih": W_ih[0].T, "w_hh": W_hh[0].T, "b": b_ih[0] + b_hh[0]}
  for k in ("w_ih", "w_hh", "b"):
    np.testing.assert_array_equal(back[k], params[k])
  np.testing.assert_array_equal(b_hh[0], 0.0)
  # cuDNN's first block is W_ii [H, F]: row j holds the input weights of input gate unit j
  np.testing.assert_array_equal(flat[:H * F].reshape(H, F), params["w_ih"][:, :H].T)


def _inputs(B=5, T=7, F=3):
  xs = jax.random.normal(jax.random.key(2), (B, T, F))
  lengths = jnp.asarray([7, 3, 0, 1, 6], jnp.int32)[:B]
  return xs, lengths


@pytest.mark.parametrize("options", [{}, {"bidirectional": True},
                                     {"residual": True, "dropout": 0.3}])
def test_values_and_gradients_equal_the_scan(options):
  xs, lengths = _inputs()
  models = {loop: drnn.stacked_rnn("lstm", 3, (4, 6, 6), time_loop=loop, **options)
            for loop in ("scan", REF)}
  params = helpers.randomize(models["scan"].init(jax.random.key(3)), jax.random.key(4))
  state = jax.tree.map(lambda a: jax.random.normal(jax.random.key(5), a.shape),
                       models["scan"].initial_state(5))  # pairs when bidirectional
  train = "dropout" in options

  def loss(model, params, xs):
    ys, final = model.apply(params, xs, lengths, state, train=train, key=jax.random.key(6))
    return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a ** 2) for a in jax.tree.leaves(final))

  got, want = (jax.jit(jax.value_and_grad(lambda p, x, m=m: loss(m, p, x), argnums=(0, 1)))
               (params, xs) for m in (models[REF], models["scan"]))
  helpers.assert_trees_close(got, want, **TOL)
  ys, _ = models[REF].apply(params, xs, lengths, state)
  assert not np.any(np.asarray(ys)[2]) and not np.any(np.asarray(ys)[1, 3:])  # padding: 0


def test_stack_records_its_time_loop():
  assert drnn.stacked_rnn("lstm", 3, (4,)).time_loop == "scan"
  assert drnn.stacked_rnn("lstm", 3, (4,), time_loop=REF).time_loop == "cudnn"


@pytest.mark.parametrize("kw,fragments", [
    ({"cell": "gru"}, ["cell: time_loop='cudnn' expected the LSTM cell", "got a 'gru' cell"]),
    ({"proj_size": 2}, ["cell:", "got a 'lstm' cell with a projection"]),
    ({"remat": True}, ["time_loop: 'cudnn' does not support remat", "got remat=True"]),
    ({"recurrent_dropout": 0.25}, ["got recurrent_dropout=0.25"]),
    ({"layer_norm": True}, ["got layer_norm=True"]),
    ({"compute_dtype": jnp.bfloat16}, ["got compute_dtype=dtype(bfloat16)"]),
    ({"schedule": "wavefront"}, ["got schedule='wavefront'"]),
    ({"time_loop": "fused"}, ["time_loop: expected one of ('scan', 'cudnn', 'onednn', 'auto')", "got 'fused'"]),
])
def test_options_cudnn_cannot_run_are_refused_when_built(kw, fragments):
  kw = {"cell": "lstm", "time_loop": REF, **kw}
  with pytest.raises(ValueError) as info:
    drnn.stacked_rnn(kw.pop("cell"), 3, (4, 4), **kw)
  for fragment in fragments:
    assert fragment in str(info.value)


def test_resets_and_other_dtypes_are_refused_when_called():
  model = drnn.stacked_rnn("lstm", 3, (4,), time_loop=REF)
  params = model.init(jax.random.key(0))
  xs, lengths = _inputs()
  resets = jnp.zeros(xs.shape[:2], bool)
  with pytest.raises(ValueError, match=r"resets: time_loop='cudnn' expected None .* got a "
                                       r"bool array \[5, 7\]"):
    model.apply(params, xs, lengths, resets=resets)
  with pytest.raises(ValueError, match="xs: time_loop='cudnn' expected float32 .* got "
                                       "bfloat16, float32"):
    model.apply(params, xs.astype(jnp.bfloat16), lengths)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="a GPU runs cuDNN")
def test_cudnn_off_a_gpu_says_so():
  model = drnn.stacked_rnn("lstm", 3, (4,), time_loop="cudnn")
  with pytest.raises(ValueError, match="time_loop: time_loop='cudnn' expected a GPU backend "
                                       "with cuDNN .* got backend 'cpu'"):
    model.apply(model.init(jax.random.key(0)), _inputs()[0])


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs a GPU")
def test_cudnn_on_a_gpu_equals_the_scan():
  xs, lengths = _inputs()
  with jax.default_matmul_precision("highest"):  # no TF32 on either side
    models = [drnn.stacked_rnn("lstm", 3, (4, 6, 6), time_loop=t) for t in ("cudnn", "scan")]
    params = helpers.randomize(models[1].init(jax.random.key(3)), jax.random.key(4))
    loss = lambda m: jax.jit(jax.value_and_grad(
        lambda p: jnp.sum(jnp.sin(m.apply(p, xs, lengths)[0]))))(params)
    helpers.assert_trees_close(loss(models[0]), loss(models[1]), rtol=1e-4, atol=1e-5)
