"""LSTM projections (`proj_size`, Sak et al. 2014): parity with torch.nn.LSTM(proj_size=)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from helpers import assert_trees_close, randomize


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_matches_torch_lstm_with_proj_size(torch, bidirectional):
  B, T, F, H, P, L = 4, 7, 3, 6, 2, 3
  torch.manual_seed(0)
  module = torch.nn.LSTM(F, H, num_layers=L, proj_size=P, batch_first=True,
                         bidirectional=bidirectional)
  model = drnn.stacked_rnn("lstm", F, (H,) * L, proj_size=P, bidirectional=bidirectional)
  state_dict = {k: v.detach().numpy() for k, v in module.state_dict().items()}
  params = drnn.from_torch(model, state_dict)
  rng = np.random.default_rng(1)
  xs = rng.standard_normal((B, T, F)).astype(np.float32)
  lengths = np.array([7, 3, 1, 5])
  packed = torch.nn.utils.rnn.pack_padded_sequence(
      torch.from_numpy(xs), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
  with torch.no_grad():
    out, (h_n, c_n) = module(packed)
  out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
  ys, state = jax.jit(model.apply)(params, jnp.asarray(xs), jnp.asarray(lengths))
  np.testing.assert_allclose(ys, out.numpy(), rtol=1e-5, atol=1e-5)
  pairs = [c for layer in state for c in (layer if bidirectional else (layer,))]
  np.testing.assert_allclose(np.stack([c.h for c in pairs]), h_n.numpy(), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.stack([c.c for c in pairs]), c_n.numpy(), rtol=1e-5, atol=1e-5)
  exported = drnn.to_torch(model, params)
  assert list(exported) == list(state_dict)  # torch's names in torch's order
  for name, value in exported.items():  # our one bias goes to bias_ih, bias_hh is zero
    if name.startswith("bias_ih"):
      value, want = value, state_dict[name] + state_dict[name.replace("_ih", "_hh")]
    elif name.startswith("bias_hh"):
      value, want = value, np.zeros_like(value)
    else:
      want = state_dict[name]
    np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-6)


def test_projection_shapes_step_and_gradients():
  model = drnn.stacked_rnn("lstm", 3, (6, 6), proj_size=2, dropout=0.2, recurrent_dropout=0.1)
  params = randomize(model.init(jax.random.key(0)), jax.random.key(1))
  layer0 = drnn.layer_params(model, params, 0)
  assert layer0["w_hh"].shape == (2, 24) and layer0["w_hr"].shape == (6, 2)
  assert drnn.layer_params(model, params, 1)["w_ih"].shape == (2, 24)
  xs = jax.random.normal(jax.random.key(2), (3, 5, 3))
  ys, state = model.apply(params, xs)
  assert ys.shape == (3, 5, 2) and state[0].h.shape == (3, 2) and state[0].c.shape == (3, 6)
  carry, y = model.step(params, model.initial_state(3), xs[:, 0])
  assert_trees_close(y, ys[:, 0], 1e-6, 1e-6)
  loss = lambda p: jnp.sum(model.apply(p, xs, train=True, key=jax.random.key(3))[0] ** 2)
  grads = jax.grad(loss)(params)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_projection_errors():
  with pytest.raises(ValueError, match="proj_size: only the 'lstm' cell"):
    drnn.stacked_rnn("gru", 3, (4,), proj_size=2)
  with pytest.raises(ValueError, match="proj_size: the layer-norm LSTM has no projection"):
    drnn.stacked_rnn("lstm", 3, (4,), proj_size=2, layer_norm=True)
  with pytest.raises(ValueError, match="proj_size: expected a positive int"):
    drnn.stacked_rnn("lstm", 3, (4,), proj_size=0)
  model = drnn.stacked_rnn("lstm", 3, (4,), proj_size=2)
  with pytest.raises(ValueError, match="Keras' LSTM has no output projection"):
    drnn.to_keras(model, model.init(jax.random.key(0)))
