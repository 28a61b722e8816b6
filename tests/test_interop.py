"""Interop: Keras import/export against NumPy Keras equations, PyTorch export and
bidirectional import against torch itself, and the errors of all four converters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from helpers import assert_trees_close

KINDS = [("lstm", None), ("gru", None), ("rnn", "tanh"), ("rnn", "relu")]
KIND_IDS = ["lstm", "gru", "rnn-tanh", "rnn-relu"]


def random_params(model, seed):
  """Normal draws in every leaf of model.init's pytree, from NumPy (nothing compiled)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  return jax.tree.map(lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), jnp.float32),
                      shapes)


# ---- Keras' equations in NumPy, written from Keras' documented maths, Keras layout ----

def sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def keras_layer(kind, act, xs, kernel, rec, bias):
  """One Keras SimpleRNN/LSTM/GRU(reset_after=True) layer: xs [B, T, F] -> ys, state."""
  U = rec.shape[0]
  h = c = np.zeros((xs.shape[0], U))
  ys = []
  for t in range(xs.shape[1]):
    x = xs[:, t]
    if kind == "lstm":  # gates [i | f | c | o]
      i, f, cc, o = np.split(x @ kernel + h @ rec + bias, 4, axis=-1)
      c = sigmoid(f) * c + sigmoid(i) * np.tanh(cc)
      h = sigmoid(o) * np.tanh(c)
    elif kind == "gru":  # gates [z | r | h]; bias[0] input path, bias[1] recurrent path
      x_z, x_r, x_h = np.split(x @ kernel + bias[0], 3, axis=-1)
      r_z, r_r, r_h = np.split(h @ rec + bias[1], 3, axis=-1)
      z, r = sigmoid(x_z + r_z), sigmoid(x_r + r_r)
      hh = np.tanh(x_h + r * r_h)
      h = z * h + (1 - z) * hh
    else:
      h = act(x @ kernel + bias + h @ rec)
    ys.append(h)
  return np.stack(ys, axis=1), ((h, c) if kind == "lstm" else (h,))


def keras_stack(kind, act, xs, weights, bidirectional):
  """Keras layers with return_sequences=True (Bidirectional: merge_mode="concat")."""
  h, states = np.asarray(xs, np.float64), []
  for arrays in weights:
    arrays = [np.asarray(a, np.float64) for a in arrays]
    ys, state = keras_layer(kind, act, h, *arrays[:3])
    if bidirectional:  # go_backwards on the time-reversed input, output flipped back
      ys_b, state_b = keras_layer(kind, act, h[:, ::-1], *arrays[3:])
      ys, state = np.concatenate([ys, ys_b[:, ::-1]], axis=-1), (state, state_b)
    h = ys
    states.append(state)
  return h, states


def keras_weights(kind, F, widths, bidirectional, rng):
  """Random arrays shaped as Keras' get_weights() of each layer."""
  G = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
  D = 2 if bidirectional else 1
  out, width = [], F
  for U in widths:
    arrays = []
    for _ in range(D):
      bias_shape = (2, G * U) if kind == "gru" else (G * U,)
      arrays += [0.5 * rng.normal(size=s) for s in ((width, G * U), (U, G * U), bias_shape)]
    out.append([a.astype(np.float32) for a in arrays])
    width = D * U
  return out


def ours_as_keras_states(kind, state, bidirectional):
  """Our per-layer state in keras_stack's layout."""
  def one(carry):
    return (carry.h, carry.c) if kind == "lstm" else (carry,)
  return [(one(s[0]), one(s[1])) if bidirectional else one(s) for s in state]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind,nl", KINDS, ids=KIND_IDS)
def test_from_keras_matches_keras_equations(kind, nl, bidirectional):
  B, T, F, widths = 3, 6, 4, (5, 3)
  rng = np.random.default_rng(0)
  weights = keras_weights(kind, F, widths, bidirectional, rng)
  model = drnn.stacked_rnn(kind, F, widths, nonlinearity=nl, bidirectional=bidirectional)
  params = drnn.from_keras(model, weights)
  xs = rng.normal(size=(B, T, F)).astype(np.float32)
  act = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), None: None}[nl]

  want_ys, want_states = keras_stack(kind, act, xs, weights, bidirectional)
  ys, state = model.apply(params, jnp.asarray(xs))
  np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-5)
  assert_trees_close(ours_as_keras_states(kind, state, bidirectional), want_states)

  # export: the exact inverse on our params, and the same function in Keras' equations
  exported = drnn.to_keras(model, params)
  assert_trees_close(drnn.from_keras(model, exported), params, rtol=0, atol=0)
  assert [[a.shape for a in layer] for layer in exported] == \
         [[a.shape for a in layer] for layer in weights]
  np.testing.assert_allclose(keras_stack(kind, act, xs, exported, bidirectional)[0],
                             want_ys, rtol=1e-5, atol=1e-5)


def test_from_keras_bad_input():
  rng = np.random.default_rng(0)
  model = drnn.stacked_rnn("gru", 4, (5, 5))
  good = keras_weights("gru", 4, (5, 5), False, rng)
  with pytest.raises(ValueError, match=r"weights: expected 2 entries .* got 1"):
    drnn.from_keras(model, good[:1])
  with pytest.raises(ValueError, match=r"weights\[1\]: expected 3 arrays .* got 2"):
    drnn.from_keras(model, [good[0], good[1][:2]])
  with pytest.raises(ValueError, match="reset_after=False"):
    drnn.from_keras(model, [good[0], [good[1][0], good[1][1], np.zeros(15)]])
  with pytest.raises(ValueError, match=r"weights\[0\]: expected kernel of shape \(4, 15\)"):
    drnn.from_keras(model, [[good[0][0][:3], *good[0][1:]], good[1]])
  with pytest.raises(TypeError, match="weights: expected a list"):
    drnn.from_keras(model, {"kernel": good[0][0]})
  bi = drnn.stacked_rnn("lstm", 4, (5,), bidirectional=True)
  with pytest.raises(ValueError, match=r"expected 6 arrays .*Bidirectional\(LSTM\)"):
    drnn.from_keras(bi, keras_weights("lstm", 4, (5,), False, rng))
  ln = drnn.stacked_rnn("lstm", 4, (5,), layer_norm=True)
  with pytest.raises(ValueError, match="no layer normalisation"):
    drnn.from_keras(ln, keras_weights("lstm", 4, (5,), False, rng))


# ---- PyTorch: bidirectional import, export of every kind, checked by torch itself ----

TORCH_KINDS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def torch_module(torch, kind, nl, F, H, L, bidirectional, seed=0):
  torch.manual_seed(seed)
  kwargs = {"nonlinearity": nl} if nl else {}
  return getattr(torch.nn, TORCH_KINDS[kind])(F, H, num_layers=L, batch_first=True,
                                             bidirectional=bidirectional, **kwargs)


def ours_as_torch_state(kind, state, bidirectional):
  """Our state as torch's h_n (and c_n): [L * D, B, H], indexed layer * D + direction."""
  carries = [c for s in state for c in (s if bidirectional else (s,))]
  if kind == "lstm":
    return np.stack([c.h for c in carries]), np.stack([c.c for c in carries])
  return (np.stack(carries),)


def run_torch(torch, module, xs, lengths):
  packed = torch.nn.utils.rnn.pack_padded_sequence(
      torch.from_numpy(xs), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
  with torch.no_grad():
    out, final = module(packed)
  out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                  total_length=xs.shape[1])
  return out.numpy(), [f.numpy() for f in (final if isinstance(final, tuple) else (final,))]


@pytest.mark.parametrize("kind,nl", KINDS[:3], ids=KIND_IDS[:3])
def test_from_torch_bidirectional_matches_torch(kind, nl, torch):
  B, T, F, H, L = 4, 7, 3, 5, 2
  module = torch_module(torch, kind, nl, F, H, L, bidirectional=True)
  state_dict = {k: v.numpy() for k, v in module.state_dict().items()}
  model = drnn.stacked_rnn(kind, F, (H,) * L, nonlinearity=nl, bidirectional=True)
  params = drnn.from_torch(model, state_dict)
  assert params[1]["bwd"]["w_ih"].shape == (1, 2 * H, model.cells[0].gates * H)

  rng = np.random.default_rng(1)
  xs = rng.normal(size=(B, T, F)).astype(np.float32)
  lengths = np.array([7, 2, 5, 1])  # the backward direction starts at each sequence's end
  want_ys, want_final = run_torch(torch, module, xs, lengths)
  ys, state = model.apply(params, jnp.asarray(xs), jnp.asarray(lengths))
  np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-5)  # padding is 0 in both
  for ours, theirs in zip(ours_as_torch_state(kind, state, True), want_final):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
  exported = drnn.to_torch(model, params)
  assert list(exported) == list(state_dict)  # torch's names in torch's order
  for name, value in exported.items():
    assert value.shape == state_dict[name].shape and value.dtype == np.float32


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind,nl", [("lstm", None), ("gru", None), ("rnn", "relu")],
                         ids=["lstm", "gru", "rnn-relu"])
def test_to_torch_round_trip_and_torch_outputs(kind, nl, bidirectional, torch):
  B, T, F, H, L = 3, 5, 4, 6, 3
  model = drnn.stacked_rnn(kind, F, (H,) * L, nonlinearity=nl, bidirectional=bidirectional)
  params = random_params(model, seed=2)
  state_dict = drnn.to_torch(model, params)
  assert_trees_close(drnn.from_torch(model, state_dict), params, rtol=0, atol=0)

  module = torch_module(torch, kind, nl, F, H, L, bidirectional)
  module.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()},
                         strict=True)
  xs = np.random.default_rng(3).normal(size=(B, T, F)).astype(np.float32)
  lengths = np.array([5, 3, 1])
  want_ys, want_final = run_torch(torch, module, xs, lengths)
  ys, state = model.apply(params, jnp.asarray(xs), jnp.asarray(lengths))
  np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-5)
  for ours, theirs in zip(ours_as_torch_state(kind, state, bidirectional), want_final):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_torch_converters_bad_input(torch):
  model = drnn.stacked_rnn("lstm", 3, (4, 4))
  proj = {k: v.numpy() for k, v in
          torch.nn.LSTM(3, 4, num_layers=2, proj_size=2).state_dict().items()}
  with pytest.raises(ValueError, match="proj_size is not supported"):
    drnn.from_torch(model, proj)
  uni = {k: v.numpy() for k, v in torch.nn.LSTM(3, 4, num_layers=2).state_dict().items()}
  bi = drnn.stacked_rnn("lstm", 3, (4, 4), bidirectional=True)
  with pytest.raises(ValueError, match=r"2-layer bidirectional torch LSTM.*'weight_ih_l0_reverse'"):
    drnn.from_torch(bi, uni)
  params = random_params(model, seed=0)
  with pytest.raises(ValueError, match=r"params\[1\]\['w_hh'\]: expected shape \(1, 4, 16\)"):
    drnn.to_torch(model, (params[0], dict(params[1], w_hh=jnp.zeros((1, 4, 4)))))
  with pytest.raises(ValueError, match="params: expected the structure of model.init"):
    drnn.to_torch(model, params[:1])
  ln = drnn.stacked_rnn("gru", 3, (4,), layer_norm=True)
  with pytest.raises(ValueError, match="PyTorch's recurrent layers have no layer norm"):
    drnn.to_torch(ln, random_params(ln, seed=0))
