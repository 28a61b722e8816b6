"""Parity with Flax linen's own cells (SimpleCell, LSTMCell, OptimizedLSTMCell, GRUCell).

Flax's weights are mapped into our layout by hand, then a multi-layer stack of
`flax.linen.RNN` layers and our `stacked_rnn` run the same inputs.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from helpers import assert_trees_close, randomize

GATES = {"rnn": None, "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


def to_ours(kind, p):
  """One layer's Flax params -> our {w_ih, w_hh, b(, b_hn)}."""
  if kind == "rnn":
    return {"w_ih": p["i"]["kernel"], "w_hh": p["h"]["kernel"], "b": p["i"]["bias"]}
  g = GATES[kind]
  out = {"w_ih": jnp.concatenate([p["i" + k]["kernel"] for k in g], axis=1),
         "w_hh": jnp.concatenate([p["h" + k]["kernel"] for k in g], axis=1)}
  if kind == "lstm":  # Flax keeps the LSTM biases on the recurrent denses
    out["b"] = jnp.concatenate([p["h" + k]["bias"] for k in g])
  else:  # GRU: input biases on ir, iz, in; the recurrent n bias stays separate
    out["b"] = jnp.concatenate([p["i" + k]["bias"] for k in g])
    out["b_hn"] = p["hn"]["bias"]
  return out


def flax_stack(cell_cls, widths, xs, seq_lengths, key):
  """Runs a stack of nn.RNN(cell_cls) layers; returns (ys, carries, per-layer params)."""
  h, carries, layer_ps = xs, [], []
  for l, width in enumerate(widths):
    rnn = nn.RNN(cell_cls(features=width), return_carry=True)
    variables = rnn.init(jax.random.fold_in(key, l), h, seq_lengths=seq_lengths)
    variables = randomize(variables, jax.random.fold_in(key, 100 + l))
    carry, h = rnn.apply(variables, h, seq_lengths=seq_lengths)
    carries.append(carry)
    layer_ps.append(variables["params"]["cell"])
  return h, carries, layer_ps


CASES = [("rnn", nn.SimpleCell), ("lstm", nn.LSTMCell), ("lstm", nn.OptimizedLSTMCell),
         ("gru", nn.GRUCell)]


@pytest.mark.parametrize("kind,cell_cls", CASES, ids=[c.__name__ for _, c in CASES])
@pytest.mark.parametrize("widths", [(5, 5, 5), (3, 2)], ids=["equal", "seed"])
def test_matches_flax_stack(kind, cell_cls, widths):
  B, T, F = 3, 7, 4
  xs = jax.random.normal(jax.random.key(0), (B, T, F))
  lengths = jnp.array([7, 4, 1], jnp.int32)
  ref_ys, ref_carries, flax_ps = flax_stack(cell_cls, widths, xs, lengths, jax.random.key(1))

  model = drnn.stacked_rnn(kind, F, widths)
  per_layer = [to_ours(kind, p) for p in flax_ps]
  params = tuple(jax.tree.map(lambda *a: jnp.stack(a), *per_layer[f:f + n])
                 for f, n in model.groups)
  ys, state = model.apply(params, xs, lengths)

  valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]  # [B, T, 1]
  valid = valid.astype(ys.dtype)
  # Flax leaves padded outputs unzeroed; ours are zero there, so compare valid steps.
  np.testing.assert_allclose(ys * valid, ref_ys * valid, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(jnp.where(valid > 0, 0, ys)).max()) == 0.0
  for ours, theirs in zip(state, ref_carries):
    if kind == "lstm":  # Flax's LSTM carry is (c, h); ours is LSTMState(h, c)
      theirs = drnn.LSTMState(h=theirs[1], c=theirs[0])
    assert_trees_close(ours, theirs)
