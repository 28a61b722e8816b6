"""An independent reference of the whole stack in float64 NumPy, from the documented equations.

It imports NumPy only, so it shares no code with deeprnn_jax: comparing the library with
it catches what comparing `apply` with `apply_reference` cannot (both run the library's
cells, dropout and masking). It is written from the docstrings of `cells.py` (equations,
gate orders, `x @ w_ih` layout, the GRU's `b_hn`), `stack.stacked_rnn` (dropout between
layers, recurrent dropout, residual, bidirectional) and `outputs.py`.

It runs one sequence at a time, each cut to its length, so it is also the "run the
sequence unpadded" reference: steps past a length do not exist here, the backward
direction starts at the last valid step, and padded outputs are zeros.

Dropout is given as boolean keep-masks and a rate (`Dropout`); the reference scales what
it keeps by 1 / (1 - rate) itself, so a library that forgets that scale disagrees.
"""

from typing import NamedTuple, Optional, Sequence

import numpy as np

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0), None: None}


class Dropout(NamedTuple):
  """The dropout of one training-mode apply: boolean keep-masks and their rates.

  Attributes:
    rate: the rate of the dropout between layers.
    keep: None, or one entry per layer: None for layer 0 (it reads xs, which no dropout
      touches) and layers without dropout, else a bool keep-mask of the layer's input,
      time-major [time, batch, features] (a fresh mask per step) or [batch, features]
      (variational: one mask per sequence, reused at every step).
    recurrent_rate: the rate of the recurrent dropout.
    recurrent_keep: None, or one entry per layer: None, or one bool [batch, hidden] mask
      per direction (forward first) for the h_{t-1} that feeds h_{t-1} @ w_hh.
  """

  rate: float = 0.0
  keep: Optional[Sequence] = None
  recurrent_rate: float = 0.0
  recurrent_keep: Optional[Sequence] = None


def _inverted(keep, rate):
  """Inverted dropout's multiplier: 1 / (1 - rate) where kept, 0 where dropped."""
  return np.where(np.asarray(keep, bool), 1.0 / (1.0 - rate), 0.0)


def _sigmoid(v):
  return 1.0 / (1.0 + np.exp(-v))


def _ln(a, blocks):
  """Layer norm of each of `blocks` equal parts of a [G*H] vector (eps 1e-5)."""
  a = a.reshape(blocks, -1)
  a = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-5)
  return a.reshape(-1)


def _np_step(kind, act, p, h, c, x, m=None):
  """One step of one sequence: x [F], h and c [H] -> (h, c); c is None but for LSTM.

  `m` [H], if given, is the recurrent dropout multiplier: the recurrence reads
  (h * m) @ w_hh, and nothing else sees the mask.
  """
  G = GATES[kind]
  ln = "ln_ih_scale" in p
  xp = x @ p["w_ih"]
  hp = (h if m is None else h * m) @ p["w_hh"]
  if ln:  # xp = LN(x @ w_ih) * ln_ih_scale + b,  hp = LN(h @ w_hh) * ln_hh_scale
    xp, hp = _ln(xp, G) * p["ln_ih_scale"], _ln(hp, G) * p["ln_hh_scale"]
  xp = xp + p["b"]
  if kind == "rnn":  # h_t = act(x_t @ w_ih + h_{t-1} @ w_hh + b)
    return act(xp + hp), None
  if kind == "lstm":  # [i, f, g, o] = x_t @ w_ih + h_{t-1} @ w_hh + b
    i, f, g, o = np.split(xp + hp, 4)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    c_out = _ln(c, 1) * p["ln_c_scale"] + p["ln_c_bias"] if ln else c
    h = _sigmoid(o) * np.tanh(c_out)
    if "w_hr" in p:  # proj_size: h = (o * tanh(c)) @ w_hr, P wide (Sak et al. 2014)
      h = h @ p["w_hr"]
    return h, c
  # GRU, reset-after: n = tanh(xn + r * (hn + b_hn)), h = (1 - z) * n + z * h, where the
  # last h is the unmasked one (recurrent dropout must not drop memory)
  xr, xz, xn = np.split(xp, 3)
  hr, hz, hn = np.split(hp, 3)
  r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
  n = np.tanh(xn + r * (hn + p["b_hn"]))
  return (1.0 - z) * n + z * h, None


def _np_run(kind, act, p, seq, h, c, reverse, m=None, starts=()):
  """One direction of one layer over one unpadded sequence [n, F] -> ([n, H], h, c).

  `starts`: the steps t > 0 where a new segment starts (segment resets): the forward
  direction restarts from (h, c) before t, the backward one before t - 1, where the
  segment before it ends.
  """
  out = [None] * len(seq)
  h0, c0 = h, c
  for t in (range(len(seq) - 1, -1, -1) if reverse else range(len(seq))):
    if (t + 1 if reverse else t) in starts:
      h, c = h0, c0
    h, c = _np_step(kind, act, p, h, c, seq[t], m)
    out[t] = h
  return np.array(out).reshape(len(seq), h.shape[0]), h, c


def _layer_input(seq, dropout, l, b):
  """Layer l's input for sequence b: its [n, F] input times the inverted keep-mask."""
  if dropout is None or dropout.keep is None or dropout.keep[l] is None:
    return seq
  assert l > 0, "layer 0 reads xs, which no dropout touches"
  keep = np.asarray(dropout.keep[l])
  keep = keep[b][None] if keep.ndim == 2 else keep[:len(seq), b]  # [1 or n, F]
  return seq * _inverted(keep, dropout.rate)


def _recurrent_multiplier(dropout, l, d, b):
  if dropout is None or dropout.recurrent_keep is None or dropout.recurrent_keep[l] is None:
    return None
  return _inverted(dropout.recurrent_keep[l][d][b], dropout.recurrent_rate)


def numpy_stack(cfg, layers, xs, lengths, state, dropout: Optional[Dropout] = None):
  """The stack in float64 NumPy, one sequence at a time, each cut to its length.

  Args:
    cfg: the configuration: "kind", "nonlinearity", "bidirectional", "residual".
    layers: one dict of NumPy arrays per layer ({"fwd": ..., "bwd": ...} if bidirectional).
    xs: [B, T, F]; lengths: [B] ints.
    state: per layer, per direction, (h [B, H], c [B, H] or None).
    dropout: None (inference) or the keep-masks of a training-mode apply.

  Returns:
    (every layer's outputs [B, T, D*H_l] with zeros past each length,
     final states shaped like `state`).
  """
  act = ACTIVATIONS[cfg["nonlinearity"]]
  dirs = ("fwd", "bwd") if cfg["bidirectional"] else (None,)
  B, T, _ = xs.shape
  seqs = [np.zeros((B, T, len(dirs) * l_state[0][0].shape[1])) for l_state in state]
  finals = [[(h.copy(), None if c is None else c.copy()) for h, c in l_state]
            for l_state in state]
  resets = cfg.get("resets")
  for b in range(B):
    seq = xs[b, :lengths[b]]  # [n, F]: only the valid steps exist here
    starts = () if resets is None else {t for t in range(1, lengths[b]) if resets[b][t]}
    for l, p in enumerate(layers):
      x = _layer_input(seq, dropout, l, b)
      outs = []
      for d, name in enumerate(dirs):
        h0, c0 = state[l][d]
        y, h, c = _np_run(cfg["kind"], act, p if name is None else p[name], x, h0[b],
                          None if c0 is None else c0[b], reverse=d == 1,
                          m=_recurrent_multiplier(dropout, l, d, b), starts=starts)
        outs.append(y)
        finals[l][d][0][b] = h
        if c is not None:
          finals[l][d][1][b] = c
      y = np.concatenate(outs, axis=-1)
      if cfg["residual"] and l > 0 and y.shape[-1] == seq.shape[-1]:
        y = y + seq  # y_l = f_l(dropout(y_{l-1})) + y_{l-1}: the undropped input
      seq = y
      seqs[l][b, :lengths[b]] = seq
  return seqs, finals


def numpy_output(cfg, seqs, lengths):
  """What `apply(..., output=cfg["output"])` returns, from the NumPy layer sequences.

  cfg["widths"] (the hidden sizes) gives the backward half's width of a bidirectional
  "last" output.
  """
  if cfg["output"] == "all":
    return tuple(seqs)
  top = seqs[-1]
  if cfg["output"] == "sequence":
    return top
  B = top.shape[0]
  last = np.zeros(top.shape[::2])  # [B, D*H]; length 0 gives zeros
  for b in range(B):
    if lengths[b] > 0:
      last[b] = top[b, lengths[b] - 1]
  if cfg["bidirectional"]:  # the backward half ends at t = 0
    H = cfg["widths"][-1]
    last[:, H:] = top[:, 0, H:]
  return last


def numpy_apply(cfg, layers, xs, lengths, state, dropout: Optional[Dropout] = None):
  """`apply`'s (ys, final states) in float64: `numpy_stack` then `numpy_output`."""
  seqs, finals = numpy_stack(cfg, layers, xs, lengths, state, dropout)
  return numpy_output(cfg, seqs, lengths), finals


def numpy_step(cfg, layers, state, x_t):
  """One time step through every layer of a unidirectional stack, as `step` does.

  Args:
    cfg: "kind", "nonlinearity", "residual".
    layers: one dict of NumPy arrays per layer.
    state: per layer, (h [B, H], c [B, H] or None).
    x_t: [B, F].

  Returns:
    (the new state shaped like `state`, the top layer's output [B, H_top]).
  """
  act = ACTIVATIONS[cfg["nonlinearity"]]
  new_state = []
  for l, (p, (h, c)) in enumerate(zip(layers, state)):
    out = [_np_step(cfg["kind"], act, p, h[b], None if c is None else c[b], x_t[b])
           for b in range(x_t.shape[0])]
    h = np.stack([o[0] for o in out])
    c = None if c is None else np.stack([o[1] for o in out])
    y = h
    if cfg["residual"] and l > 0 and y.shape[-1] == x_t.shape[-1]:
      y = y + x_t
    new_state.append((h, c))
    x_t = y
  return new_state, x_t
