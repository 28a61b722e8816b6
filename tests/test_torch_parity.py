"""Parity with torch.nn.RNN / LSTM / GRU through `from_torch`, the same inputs and outputs."""

import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from helpers import import_torch

torch = import_torch(module_level=True)  # every test here needs it

TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]


def state_dict_np(module):
  return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def torch_module(kind, nonlinearity, F, H, L, batch_first, seed=0):
  torch.manual_seed(seed)
  kwargs = {"nonlinearity": nonlinearity} if nonlinearity else {}
  return TORCH[kind](F, H, num_layers=L, batch_first=batch_first, **kwargs)


def ours_state(state):
  """Our per-layer state as torch's (h_n[, c_n]) stacked [L, B, H]."""
  if isinstance(state[0], drnn.LSTMState):
    return np.stack([s.h for s in state]), np.stack([s.c for s in state])
  return (np.stack(state),)


@pytest.mark.parametrize("kind,nonlinearity", CASES)
@pytest.mark.parametrize("batch_first", [True, False])
def test_from_torch_same_outputs(kind, nonlinearity, batch_first):
  B, T, F, H, L = 3, 6, 4, 5, 3
  module = torch_module(kind, nonlinearity, F, H, L, batch_first)
  model = drnn.stacked_rnn(kind, F, (H,) * L, nonlinearity=nonlinearity)
  params = drnn.from_torch(model, state_dict_np(module))

  xs = np.random.default_rng(1).normal(size=(B, T, F)).astype(np.float32)
  x_t = torch.from_numpy(xs if batch_first else xs.transpose(1, 0, 2).copy())
  with torch.no_grad():
    out, final = module(x_t)
  out = out.numpy() if batch_first else out.numpy().transpose(1, 0, 2)
  final = final if isinstance(final, tuple) else (final,)

  ys, state = model.apply(params, jnp.asarray(xs))
  np.testing.assert_allclose(ys, out, rtol=1e-5, atol=1e-5)
  for ours, theirs in zip(ours_state(state), final):
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,nonlinearity", CASES)
def test_from_torch_with_lengths_and_initial_state(kind, nonlinearity):
  B, T, F, H, L = 4, 7, 3, 4, 2
  module = torch_module(kind, nonlinearity, F, H, L, batch_first=True, seed=1)
  model = drnn.stacked_rnn(kind, F, (H,) * L, nonlinearity=nonlinearity)
  params = drnn.from_torch(model, state_dict_np(module))
  rng = np.random.default_rng(2)
  xs = rng.normal(size=(B, T, F)).astype(np.float32)
  lengths = np.array([7, 2, 5, 1])
  h0 = rng.normal(size=(L, B, H)).astype(np.float32)
  c0 = rng.normal(size=(L, B, H)).astype(np.float32)

  packed = torch.nn.utils.rnn.pack_padded_sequence(
      torch.from_numpy(xs), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
  hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else torch.from_numpy(h0)
  with torch.no_grad():
    out, final = module(packed, hx)
  out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
  final = final if isinstance(final, tuple) else (final,)

  if kind == "lstm":
    init = tuple(drnn.LSTMState(jnp.asarray(h0[l]), jnp.asarray(c0[l])) for l in range(L))
  else:
    init = tuple(jnp.asarray(h0[l]) for l in range(L))
  ys, state = model.apply(params, jnp.asarray(xs), jnp.asarray(lengths), initial_state=init)
  np.testing.assert_allclose(ys, out.numpy(), rtol=1e-5, atol=1e-5)  # torch pads with 0 too
  for ours, theirs in zip(ours_state(state), final):
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_from_torch_mixed_widths_seed_stack(kind):
  """The seed's 3 -> 3 -> 2 stack: two torch modules, their entries renamed to l0 and l1."""
  first, second = TORCH[kind](3, 3), TORCH[kind](3, 2)
  state_dict = {k: v for k, v in state_dict_np(first).items()}
  state_dict.update({k.replace("_l0", "_l1"): v for k, v in state_dict_np(second).items()})
  model = drnn.stacked_rnn(kind, 3, (3, 2))
  params = drnn.from_torch(model, state_dict)
  xs = np.random.default_rng(3).normal(size=(2, 5, 3)).astype(np.float32)
  with torch.no_grad():
    mid, _ = first(torch.from_numpy(xs).transpose(0, 1))
    out, _ = second(mid)
  ys, _ = model.apply(params, jnp.asarray(xs))
  np.testing.assert_allclose(ys, out.transpose(0, 1).numpy(), rtol=1e-5, atol=1e-5)
