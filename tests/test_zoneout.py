"""Zoneout (Krueger et al. 2016), the wrapper added as one file: against a plain NumPy
loop of the documented equations, with the masks drawn as `layers/zoneout.py` documents
(re-derived from the key's bits by `helpers.documented_keep`), in training and evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import deeprnn_jax as drnn
import np_random
from helpers import documented_keep
from np_reference import ACTIVATIONS, _np_step

B, T, F = 3, 5, 4
LENGTHS = np.array([5, 3, 1])


def _zone_masks(key, layer, layers, rates, widths):
  """[parts] of bool [T, B, w]: True where the unit keeps its previous value."""
  k = jax.random.fold_in(jax.random.split(key, layers)[layer], 3)  # forward direction
  return [~documented_keep(kk, r, (T, B, w))
          for kk, r, w in zip(jax.random.split(k, len(widths)), rates, widths)]


def numpy_zoneout(kind, model, params, xs, rate, cell_rate, key):
  """The stack in float64 NumPy, one sequence at a time cut to its length; `key` None:
  evaluation (the expectation), else training with the documented masks."""
  L = len(model.cells)
  layers = [jax.tree.map(lambda a: np.asarray(a, np.float64), drnn.layer_params(model, params, l))
            for l in range(L)]
  H = model.hidden_sizes
  seqs = [np.asarray(xs, np.float64)[b, :LENGTHS[b]] for b in range(B)]
  for l, p in enumerate(layers):
    rates = [rate, cell_rate] if kind == "lstm" else [rate]
    masks = None if key is None else _zone_masks(key, l, L, rates, [H[l]] * len(rates))
    out = []
    for b, seq in enumerate(seqs):
      h, c = np.zeros(H[l]), (np.zeros(H[l]) if kind == "lstm" else None)
      ys = []
      for t, x in enumerate(seq):
        h_new, c_new = _np_step(kind, ACTIVATIONS["tanh" if kind == "rnn" else None], p, h, c, x)
        if key is None:  # evaluation: h_t = p h_{t-1} + (1 - p) h~_t
          keep_h, keep_c = rate, cell_rate
        else:
          keep_h = masks[0][t, b].astype(np.float64)
          keep_c = masks[1][t, b].astype(np.float64) if kind == "lstm" else None
        h = keep_h * h + (1 - keep_h) * h_new
        if kind == "lstm":
          c = keep_c * c + (1 - keep_c) * c_new
        ys.append(h)
      out.append(np.array(ys).reshape(len(seq), H[l]))
    seqs = out
  ys = np.zeros((B, T, H[-1]))
  for b, seq in enumerate(seqs):
    ys[b, :LENGTHS[b]] = seq
  return ys


@pytest.mark.parametrize("kind", ("rnn", "lstm", "gru"))
def test_zoneout_equals_a_numpy_loop_in_training_and_evaluation(kind):
  rate, cell_rate = 0.3, 0.15
  model = drnn.stacked_rnn(kind, F, (6, 6), wrappers=[drnn.zoneout(rate, cell_rate)])
  params = np_random.params(model, seed=1)
  xs = np_random.normal((B, T, F), 2)
  key = jax.random.key(7)
  apply = jax.jit(model.apply, static_argnames="train")
  for train in (True, False):
    got = apply(params, xs, jnp.asarray(LENGTHS), train=train, key=key if train else None)[0]
    want = numpy_zoneout(kind, model, params, xs, rate, cell_rate if kind == "lstm" else rate,
                         key if train else None)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=f"train={train}")
  # training really zones out: without it the numbers differ, and a rate of 0 is no zoneout
  plain = drnn.stacked_rnn(kind, F, (6, 6))
  base = plain.apply(params, xs, jnp.asarray(LENGTHS))[0]
  assert not np.allclose(apply(params, xs, jnp.asarray(LENGTHS), train=True, key=key)[0], base)
  none = drnn.stacked_rnn(kind, F, (6, 6), wrappers=[drnn.zoneout(0.0)])
  np.testing.assert_allclose(none.apply(params, xs, jnp.asarray(LENGTHS), train=True, key=key)[0],
                             base, rtol=1e-6, atol=1e-7)


def test_zoneout_with_other_wrappers_gradients_and_checks():
  model = drnn.stacked_rnn("lstm", F, (5, 5), wrappers=[drnn.zoneout(0.2)], bidirectional=True,
                           recurrent_dropout=0.1, dropout=0.2, residual=True)
  params = np_random.params(model, seed=3)
  xs = np_random.normal((B, T, F), 4)
  key = jax.random.key(1)
  loss = lambda p: jnp.sum(jnp.sin(model.apply(p, xs, jnp.asarray(LENGTHS), train=True,
                                                key=key)[0]))
  check_grads(loss, (params,), order=1, modes=("rev",), atol=2e-2, rtol=2e-2)
  assert model.layers[0].needs_key
  with pytest.raises(ValueError, match="key: .*zoneout in training needs a PRNG key"):
    gru = drnn.stacked_rnn("gru", F, (5,), wrappers=[drnn.zoneout(0.2)])
    gru.apply(gru.init(jax.random.key(0)), xs, train=True)
  with pytest.raises(ValueError, match="schedule: 'wavefront' does not support zoneout"):
    drnn.stacked_rnn("gru", F, (5, 5), schedule="wavefront", wrappers=[drnn.zoneout(0.2)])
  with pytest.raises(ValueError, match="time_loop: 'cudnn' does not support zoneout"):
    drnn.stacked_rnn("lstm", F, (5,), time_loop="cudnn", wrappers=[drnn.zoneout(0.2)])
  with pytest.raises(ValueError, match=r"rate: expected a rate in \[0, 1\), got 1.0"):
    drnn.zoneout(1.0)
  with pytest.raises(TypeError, match="wrappers\\[0\\]: expected a Wrapper"):
    drnn.stacked_rnn("gru", F, (5,), wrappers=[0.1])
