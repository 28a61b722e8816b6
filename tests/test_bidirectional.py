"""Bidirectional stacks against PyTorch (packed sequences), Flax `nn.Bidirectional` and a
NumPy per-sequence reversal; scan == loop; padding; state layout and its validation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
import np_random
from helpers import assert_trees_close


def from_torch_by_hand(model, module):
  """Our bidirectional params from a torch module's weights, mapped here independently."""
  sd = {k: v.detach().numpy().astype(np.float64) for k, v in module.state_dict().items()}
  per_layer = []
  for k, cell in enumerate(model.cells):
    H, layer = cell.hidden_size, {}
    for name, suffix in (("fwd", ""), ("bwd", "_reverse")):
      b_ih, b_hh = sd[f"bias_ih_l{k}{suffix}"], sd[f"bias_hh_l{k}{suffix}"]
      p = {"w_ih": sd[f"weight_ih_l{k}{suffix}"].T, "w_hh": sd[f"weight_hh_l{k}{suffix}"].T,
           "b": b_ih + b_hh}
      if cell.kind == "gru":  # r multiplies the recurrent n bias: it stays apart
        p["b"] = np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
        p["b_hn"] = b_hh[2 * H:]
      layer[name] = {n: jnp.asarray(v, jnp.float32) for n, v in p.items()}
    per_layer.append(layer)
  return tuple(jax.tree.map(lambda *a: jnp.stack(a), *per_layer[f:f + n]) for f, n in model.groups)


def to_torch_state(state, kind):
  """Our ((fwd, bwd), ...) per layer -> torch's h_n (and c_n) [L * 2, B, H]."""
  pairs = [carry for layer in state for carry in layer]  # index layer * 2 + direction
  if kind == "lstm":
    return np.stack([c.h for c in pairs]), np.stack([c.c for c in pairs])
  return (np.stack(pairs),)


@pytest.mark.parametrize("kind,with_lengths", [("lstm", True), ("gru", True), ("gru", False)],
                         ids=["lstm-packed", "gru-packed", "gru-full"])
def test_matches_torch_bidirectional(kind, with_lengths, torch):
  B, T, F, H, L = 4, 7, 3, 5, 3
  torch.manual_seed(0)
  module = getattr(torch.nn, kind.upper())(F, H, num_layers=L, batch_first=True,
                                           bidirectional=True)
  model = drnn.stacked_rnn(kind, F, (H,) * L, bidirectional=True)
  params = from_torch_by_hand(model, module)
  assert model.groups == ((0, 1), (1, 2))  # 3 -> 10 -> 10 -> 10: layers 1, 2 depth-scanned

  rng = np.random.default_rng(1)
  xs = rng.normal(size=(B, T, F)).astype(np.float32)
  lengths = np.array([7, 2, 5, 1]) if with_lengths else np.full(B, T)
  h0 = rng.normal(size=(2 * L, B, H)).astype(np.float32)
  c0 = rng.normal(size=(2 * L, B, H)).astype(np.float32)
  hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else torch.from_numpy(h0)
  packed = torch.nn.utils.rnn.pack_padded_sequence(
      torch.from_numpy(xs), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False)
  with torch.no_grad():
    out, final = module(packed, hx)
  out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
  final = final if isinstance(final, tuple) else (final,)

  def carry(l, d):
    i = 2 * l + d
    if kind == "lstm":
      return drnn.LSTMState(jnp.asarray(h0[i]), jnp.asarray(c0[i]))
    return jnp.asarray(h0[i])

  init = tuple((carry(l, 0), carry(l, 1)) for l in range(L))
  run = jax.jit(model.apply, static_argnames="output")
  ys, state = run(params, jnp.asarray(xs), jnp.asarray(lengths) if with_lengths else None,
                  initial_state=init)
  assert ys.shape == (B, T, 2 * H)
  np.testing.assert_allclose(ys, out.numpy(), rtol=1e-5, atol=1e-5)  # padding: 0 in both
  for ours, theirs in zip(to_torch_state(state, kind), final):
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-5)
  # output="last": the forward half at the last valid step, the backward half at t = 0,
  # which is torch's h_n of the top layer's two directions
  last, _ = run(params, jnp.asarray(xs), jnp.asarray(lengths), initial_state=init,
                output="last")
  h_n = final[0].numpy()
  np.testing.assert_allclose(last, np.concatenate([h_n[-2], h_n[-1]], -1), rtol=1e-5, atol=1e-5)


def test_matches_flax_bidirectional_with_seq_lengths():
  """Two stacked flax `nn.Bidirectional(nn.RNN(GRUCell), nn.RNN(GRUCell))` layers."""
  B, T, F, H = 3, 6, 4, 5
  xs = np_random.normal((B, T, F))
  lengths = jnp.array([6, 3, 1], jnp.int32)
  h, per_layer, carries = xs, [], []
  for l in range(2):
    bi = nn.Bidirectional(nn.RNN(nn.GRUCell(H)), nn.RNN(nn.GRUCell(H)), return_carry=True)
    variables = np_random.like(jax.eval_shape(bi.init, jax.random.key(l), h,
                                              seq_lengths=lengths), 10 + l)
    carry, h = bi.apply(variables, h, seq_lengths=lengths)
    carries.append(carry)
    layer = {}
    for name, flax_name in (("fwd", "forward_rnn"), ("bwd", "backward_rnn")):
      p = variables["params"][flax_name]["cell"]
      layer[name] = {
          "w_ih": jnp.concatenate([p[k]["kernel"] for k in ("ir", "iz", "in")], axis=1),
          "w_hh": jnp.concatenate([p[k]["kernel"] for k in ("hr", "hz", "hn")], axis=1),
          "b": jnp.concatenate([p[k]["bias"] for k in ("ir", "iz", "in")]),
          "b_hn": p["hn"]["bias"]}
    per_layer.append(layer)

  model = drnn.stacked_rnn("gru", F, (H, H), bidirectional=True)
  params = tuple(jax.tree.map(lambda *a: jnp.stack(a), *per_layer[f:f + n])
                 for f, n in model.groups)
  ys, state = jax.jit(model.apply)(params, xs, lengths)
  valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]  # [B, T, 1]
  # Flax leaves padded outputs unzeroed; compare the valid steps, ours are zero past them
  np.testing.assert_allclose(jnp.where(valid, ys, 0), jnp.where(valid, h, 0),
                             rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(jnp.where(valid, 0, ys)).max()) == 0.0
  assert_trees_close(state, tuple(tuple(c) for c in carries))


def reverse_valid(a, lengths):
  """NumPy: reverses the first lengths[b] steps of every row of a [B, T, ...]."""
  out = np.zeros_like(a)
  for b, n in enumerate(lengths):
    out[b, :n] = a[b, :n][::-1]
  return out


@pytest.mark.parametrize("kind", ["lstm"])
def test_backward_direction_is_forward_on_reversed_valid_part(kind):
  B, T, F, H = 3, 6, 2, 4
  model = drnn.stacked_rnn(kind, F, (H,), bidirectional=True)
  params = np_random.params(model, scale=0.5)
  xs = np.asarray(np_random.normal((B, T, F), 2))
  lengths = np.array([6, 4, 0])
  ys, ((fwd, bwd),) = jax.jit(model.apply)(params, jnp.asarray(xs), jnp.asarray(lengths))

  one_way = drnn.stacked_rnn(kind, F, (H,))
  run = jax.jit(one_way.apply)
  ys_f, (f_state,) = run((params[0]["fwd"],), jnp.asarray(xs), jnp.asarray(lengths))
  rev, (b_state,) = run((params[0]["bwd"],), jnp.asarray(reverse_valid(xs, lengths)),
                        jnp.asarray(lengths))
  np.testing.assert_allclose(ys[..., :H], ys_f, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(ys[..., H:], reverse_valid(np.asarray(rev), lengths),
                             rtol=1e-6, atol=1e-6)
  assert_trees_close((fwd, bwd), (f_state, b_state))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_scan_equals_loop_and_padding_is_inert(kind):
  model = drnn.stacked_rnn(kind, 3, (4, 4, 2), bidirectional=True, residual=True)
  params = np_random.params(model)
  xs = np_random.normal((3, 7, 3), 2)
  lengths = jnp.array([7, 0, 3], jnp.int32)
  init = jax.tree.map(lambda a: a + 0.2, model.initial_state(3))
  run = jax.jit(model.apply, static_argnames="output")
  got = run(params, xs, lengths, initial_state=init, output="all")
  assert_trees_close(got, model.apply_reference(params, xs, lengths, initial_state=init,
                                                output="all"))
  assert [y.shape for y in got[0]] == [(3, 7, 8), (3, 7, 8), (3, 7, 4)]
  pad = jnp.arange(7)[None, :, None] >= lengths[:, None, None]  # [B, T, 1]
  noisy = jnp.where(pad, 1e3, xs)
  noisy_all = run(params, noisy, lengths, initial_state=init, output="all")
  assert_trees_close(noisy_all, got, rtol=0, atol=0)
  assert all(float(jnp.abs(jnp.where(pad, y, 0)).max()) == 0 for y in got[0])  # zero padding


def test_state_layout_and_errors():
  model = drnn.stacked_rnn("lstm", 3, (4, 2), bidirectional=True)
  params = np_random.like(jax.eval_shape(model.init, jax.random.key(0)))  # init's layout
  assert set(params[0]) == {"fwd", "bwd"}
  assert params[1]["bwd"]["w_ih"].shape == (1, 8, 8)  # layer 1 reads [fwd | bwd] = 2 * 4
  assert set(drnn.layer_params(model, params, 1)) == {"fwd", "bwd"}
  state = model.initial_state(2)
  assert isinstance(state[1], tuple) and isinstance(state[1][1], drnn.LSTMState)
  assert state[1][0].h.shape == (2, 2)
  xs = jnp.ones((2, 5, 3))
  with pytest.raises(TypeError, match=r"initial_state\[0\]: expected a pair"):
    model.apply(params, xs, initial_state=(state[0][0], state[1]))
  bad = (state[0], (state[1][0], drnn.LSTMState(jnp.ones((2, 3)), jnp.ones((2, 2)))))
  with pytest.raises(ValueError, match=r"initial_state\[1\]\[1\]\.h: expected shape \(2, 2\)"):
    model.apply(params, xs, initial_state=bad)
  with pytest.raises(ValueError, match="step: a bidirectional stack"):
    model.step(params, state, xs[:, 0])
