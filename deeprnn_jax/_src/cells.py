"""Cells: simple RNN (tanh/ReLU), LSTM and GRU as pure functions.

Every cell stores its weights as `x @ kernel` (Keras/Flax orientation, the transpose of
PyTorch's): `w_ih` [input_size, G*H], `w_hh` [H, G*H], `b` [G*H], gate blocks side by side
along the last axis in the order its docstring states. The GRU also has `b_hn` [H].

With `layer_norm=True` (LSTM and GRU; Ba et al. 2016, "Layer Normalization") the input
and the recurrent projections are normalised separately, each gate block on its own,
before they are added:

    LN(a) = (a - mean(a)) / sqrt(var(a) + 1e-5), mean and var over each H-wide gate block
    xp = LN(x_t @ w_ih) * ln_ih_scale + b
    hp = LN(h_{t-1} @ w_hh) * ln_hh_scale

and the LSTM also normalises its cell state before the output tanh:
h_t = sigmoid(o) * tanh(LN(c_t) * ln_c_scale + ln_c_bias). Extra params: `ln_ih_scale`,
`ln_hh_scale` [G*H] (init 1), and for the LSTM `ln_c_scale` (1), `ln_c_bias` (0) [H].
Ba et al. give each projection's LN a shift as well; b (and the GRU's b_hn) already is
that shift, so the two extra ones would be redundant and are left out.
"""

from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax._src import fast_scan
from deeprnn_jax._src import initializers as inits
from deeprnn_jax._src import precision
from deeprnn_jax._src.base import Cell, LSTMState

NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}
LN_EPSILON = 1e-5  # PyTorch's nn.LayerNorm default


def _check_size(value, argname):
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f"{argname}: expected a positive int, got {value!r}")


def _block_norm(a, blocks):
  """Normalises each of `blocks` equal parts of the last axis (mean 0, variance 1)."""
  shape, dtype = a.shape, a.dtype
  # statistics in float32 at least: bf16 sums over H values lose too many digits
  # (no promote_types: it refuses bf16 + f32 under strict dtype promotion)
  a = a.astype(jnp.float32 if jnp.finfo(dtype).bits < 32 else dtype)
  a = a.reshape(shape[:-1] + (blocks, shape[-1] // blocks))  # [..., G, H]
  mean = a.mean(-1, keepdims=True)
  var = jnp.square(a - mean).mean(-1, keepdims=True)
  return ((a - mean) * jax.lax.rsqrt(var + LN_EPSILON)).reshape(shape).astype(dtype)


def _recurrent(params, h, gates, layer_norm):
  """h @ w_hh [B, G*H], block-normalised and scaled when the cell has layer norm."""
  hp = precision.dot(h, params["w_hh"], params["b"].dtype)
  if layer_norm:
    hp = _block_norm(hp, gates) * params["ln_hh_scale"]
  return hp


def _make_cell(kind, hidden_size, gates, recur, init_fn, carry_fn, layer_norm=False,
               fast_rule=None, output_size=None):
  """Builds the Cell from a cell's recurrence; project and step are shared. A layer-norm
  cell has no fast rule: the rules are written for the plain projections."""

  def project(params, x):
    xp = precision.dot(x, params["w_ih"], params["b"].dtype)
    if layer_norm:
      xp = _block_norm(xp, gates) * params["ln_ih_scale"]
    return xp + params["b"]

  def step(params, carry, x):
    return recur(params, carry, project(params, x))

  return Cell(init=init_fn, project=project, recur=recur, step=step,
              initial_carry=carry_fn, hidden_size=hidden_size, kind=kind, gates=gates,
              layer_norm=layer_norm, fast_rule=None if layer_norm else fast_rule,
              output_size=output_size)


def _add_ln_params(hidden_size, gates, cell_state):
  """Init-time extra: layer-norm gains of 1 (and the LSTM's cell-state shift of 0)."""

  def extra(params, dtype):
    params["ln_ih_scale"] = jnp.ones((gates * hidden_size,), dtype)
    params["ln_hh_scale"] = jnp.ones((gates * hidden_size,), dtype)
    if cell_state:
      params["ln_c_scale"] = jnp.ones((hidden_size,), dtype)
      params["ln_c_bias"] = jnp.zeros((hidden_size,), dtype)
    return params

  return extra


def _chain(*extras):
  def extra(params, dtype):
    for e in extras:
      params = e(params, dtype)
    return params

  return extra


def _check_layer_norm(layer_norm):
  if not isinstance(layer_norm, bool):
    raise TypeError(f"layer_norm: expected True or False, got {layer_norm!r}")


def _init_fn(hidden_size, gates, kernel_init, recurrent_init, bias_init, extra=None,
             rows=None):
  """`rows`: the width of the h that w_hh reads (hidden_size, or an LSTM's proj_size)."""
  rows = hidden_size if rows is None else rows

  def init(key, input_size, dtype=jnp.float32):
    _check_size(input_size, "input_size")
    k_ih, k_hh, k_b = jax.random.split(key, 3)
    params = {
        "w_ih": kernel_init(k_ih, (input_size, gates * hidden_size), dtype),
        "w_hh": inits.per_gate(recurrent_init, k_hh, (rows, gates * hidden_size),
                               gates, dtype),
        "b": bias_init(k_b, (gates * hidden_size,), dtype),
    }
    if extra is not None:
      params = extra(params, dtype)
    return params

  return init


def _h_carry(hidden_size):
  def initial_carry(batch_size, dtype=jnp.float32):
    return jnp.zeros((batch_size, hidden_size), dtype)

  return initial_carry


def rnn(hidden_size: int, *, nonlinearity: str = "tanh",
        kernel_init: Union[str, inits.Initializer, None] = None,
        recurrent_init: Union[str, inits.Initializer, None] = None,
        bias_init: Union[str, inits.Initializer, None] = None) -> Cell:
  """Simple (Elman) RNN cell.

      h_t = act(x_t @ w_ih + h_{t-1} @ w_hh + b),   y_t = h_t,   act in {tanh, relu}

  This is the seed equation H_t^l = tanh(W^l H_{t-1}^l + U^l H_t^{l-1} + b^l) with
  W = w_hh^T and U = w_ih^T. Layout: `w_ih` [in, H], `w_hh` [H, H], `b` [H].
  Defaults: Glorot-uniform input kernel (He-uniform for relu), orthogonal recurrent
  kernel, zero bias. Carry: h [B, H].

  Example:
    >>> cell = rnn(8)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> h, y = cell.step(params, cell.initial_carry(2), jnp.ones((2, 3)))
  """
  _check_size(hidden_size, "hidden_size")
  if nonlinearity not in NONLINEARITIES:
    raise ValueError(f"nonlinearity: expected one of {sorted(NONLINEARITIES)}, "
                     f"got {nonlinearity!r}")
  act = NONLINEARITIES[nonlinearity]
  default_kernel = "he_uniform" if nonlinearity == "relu" else "glorot_uniform"

  def recur(params, h, xp):
    h = act(xp + precision.dot(h, params["w_hh"], params["b"].dtype))
    return h, h.astype(params["w_hh"].dtype)  # y in the compute dtype

  init = _init_fn(hidden_size, 1, inits.resolve(kernel_init, default_kernel, "kernel_init"),
                  inits.resolve(recurrent_init, "orthogonal", "recurrent_init"),
                  inits.resolve(bias_init, "zeros", "bias_init"))
  rule = fast_scan.RNN_RELU if nonlinearity == "relu" else fast_scan.RNN_TANH
  return _make_cell("rnn", hidden_size, 1, recur, init, _h_carry(hidden_size), fast_rule=rule)


def lstm(hidden_size: int, *, forget_bias: float = 1.0, layer_norm: bool = False,
         proj_size: Optional[int] = None,
         kernel_init: Union[str, inits.Initializer, None] = None,
         recurrent_init: Union[str, inits.Initializer, None] = None,
         bias_init: Union[str, inits.Initializer, None] = None) -> Cell:
  """LSTM cell (Hochreiter & Schmidhuber 1997, with forget gate, Gers et al. 2000).

      [i, f, g, o] = x_t @ w_ih + h_{t-1} @ w_hh + b          (gate order i, f, g, o)
      c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
      h_t = sigmoid(o) * tanh(c_t),   y_t = h_t

  Layout: `w_ih` [in, 4H], `w_hh` [H, 4H], `b` [4H], blocks [i | f | g | o] as in
  PyTorch (one bias: PyTorch's b_ih + b_hh). `forget_bias` is written into b[H:2H] at
  init (Keras' `unit_forget_bias`, Jozefowicz et al. 2015) so the cell remembers by
  default; it is not added in the forward pass, so imported weights run unchanged.
  Carry: `LSTMState(h, c)`, each [B, H].

  With `layer_norm=True` it is the layer-normalised LSTM of Ba et al. 2016 (equations in
  this module's docstring), with the extra params `ln_ih_scale`, `ln_hh_scale` [4H],
  `ln_c_scale`, `ln_c_bias` [H]; h_t = sigmoid(o) * tanh(LN(c_t) * ln_c_scale + ln_c_bias)
  while the carry keeps the unnormalised c_t.

  With `proj_size=P` (Sak et al. 2014, "LSTM recurrent neural network architectures for
  large scale acoustic modeling"; PyTorch's `nn.LSTM(proj_size=)`) the output is
  projected: h_t = (sigmoid(o) * tanh(c_t)) @ w_hr, with `w_hr` [H, P] (Glorot-uniform,
  PyTorch's weight_hr transposed), so h_t, y_t and the rows of `w_hh` [P, 4H] are P wide
  while c_t stays [B, H]. Not with layer_norm; no hand-written gradient (autodiff).
  """
  _check_size(hidden_size, "hidden_size")
  _check_layer_norm(layer_norm)
  H = hidden_size
  if proj_size is not None:
    _check_size(proj_size, "proj_size")
    if layer_norm:
      raise ValueError("proj_size: the layer-norm LSTM has no projection; expected "
                       "proj_size=None with layer_norm=True, got proj_size="
                       f"{proj_size!r}")
  P = H if proj_size is None else proj_size

  def recur(params, carry, xp):
    gates = xp + _recurrent(params, carry.h, 4, layer_norm)  # [B, 4H]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
    c_out = c
    if layer_norm:
      c_out = _block_norm(c, 1) * params["ln_c_scale"] + params["ln_c_bias"]
    h = jax.nn.sigmoid(o) * jnp.tanh(c_out)
    if proj_size is not None:
      h = precision.dot(h, params["w_hr"], params["b"].dtype)  # [B, P]
    return LSTMState(h, c), h.astype(params["w_hh"].dtype)  # y in the compute dtype

  def add_forget_bias(params, dtype):
    params["b"] = params["b"].at[H:2 * H].add(jnp.asarray(forget_bias, dtype))
    return params

  def initial_carry(batch_size, dtype=jnp.float32):
    zeros = jnp.zeros((batch_size, H), dtype)
    if proj_size is not None:
      return LSTMState(jnp.zeros((batch_size, P), dtype), zeros)
    return LSTMState(zeros, zeros)

  kernel = inits.resolve(kernel_init, "glorot_uniform", "kernel_init")
  init = _init_fn(H, 4, kernel, inits.resolve(recurrent_init, "orthogonal", "recurrent_init"),
                  inits.resolve(bias_init, "zeros", "bias_init"),
                  extra=_chain(add_forget_bias, _add_ln_params(H, 4, True)) if layer_norm
                  else add_forget_bias, rows=P)
  if proj_size is not None:
    init = _with_projection(init, kernel, H, P)
    return _make_cell("lstm", H, 4, recur, init, initial_carry, output_size=P)
  return _make_cell("lstm", H, 4, recur, init, initial_carry, layer_norm, fast_scan.LSTM)


def _with_projection(init, kernel_init, H, P):
  """`init` plus the LSTM's output projection w_hr [H, P], from a key of its own."""

  def init_proj(key, input_size, dtype=jnp.float32):
    params = init(key, input_size, dtype)
    params["w_hr"] = kernel_init(jax.random.fold_in(key, 1), (H, P), dtype)
    return params

  return init_proj


def gru(hidden_size: int, *, layer_norm: bool = False,
        kernel_init: Union[str, inits.Initializer, None] = None,
        recurrent_init: Union[str, inits.Initializer, None] = None,
        bias_init: Union[str, inits.Initializer, None] = None) -> Cell:
  """GRU cell in the reset-after form of PyTorch, cuDNN and Keras `reset_after=True`.

      [xr, xz, xn] = x_t @ w_ih + b,   [hr, hz, hn] = h_{t-1} @ w_hh   (gate order r, z, n)
      r = sigmoid(xr + hr),   z = sigmoid(xz + hz)
      n = tanh(xn + r * (hn + b_hn))
      h_t = (1 - z) * n + z * h_{t-1},   y_t = h_t

  Layout: `w_ih` [in, 3H], `w_hh` [H, 3H], blocks [r | z | n] as in PyTorch; `b` [3H]
  holds b_ir + b_hr, b_iz + b_hz and b_in; `b_hn` [H] is the recurrent n bias, which
  must stay separate because r multiplies it. Carry: h [B, H].

  With `layer_norm=True` the input and recurrent projections are layer-normalised per
  gate block (module docstring), with the extra params `ln_ih_scale`, `ln_hh_scale` [3H];
  b_hn stays the shift of the normalised hn, so n = tanh(xn + r * (LN(hn) * s + b_hn)).
  """
  _check_size(hidden_size, "hidden_size")
  _check_layer_norm(layer_norm)
  H = hidden_size
  bias = inits.resolve(bias_init, "zeros", "bias_init")

  def recur(params, h, xp):
    hp = _recurrent(params, h, 3, layer_norm)  # [B, 3H]
    xr, xz, xn = jnp.split(xp, 3, axis=-1)
    hr, hz, hn = jnp.split(hp, 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * (hn + params["b_hn"]))
    h = (1.0 - z) * n + z * h
    return h, h.astype(params["w_hh"].dtype)  # y in the compute dtype

  def add_b_hn(params, dtype):
    params["b_hn"] = bias(jax.random.key(0), (H,), dtype)
    return params

  init = _init_fn(H, 3, inits.resolve(kernel_init, "glorot_uniform", "kernel_init"),
                  inits.resolve(recurrent_init, "orthogonal", "recurrent_init"),
                  bias, extra=_chain(add_b_hn, _add_ln_params(H, 3, False)) if layer_norm
                  else add_b_hn)
  return _make_cell("gru", H, 3, recur, init, _h_carry(H), layer_norm, fast_scan.GRU)


CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}


def make_cell(kind: str, hidden_size: int, *, nonlinearity: Optional[str] = None,
              forget_bias: Optional[float] = None, layer_norm: bool = False,
              proj_size: Optional[int] = None, **init_kwargs) -> Cell:
  """Builds a cell by name, rejecting options that do not apply to it."""
  if kind not in CELLS:
    raise ValueError(f"cell: expected one of {sorted(CELLS)}, got {kind!r}")
  kwargs = dict(init_kwargs)
  if proj_size is not None:
    if kind != "lstm":
      raise ValueError(f"proj_size: only the 'lstm' cell has an output projection, got "
                       f"cell {kind!r}")
    kwargs["proj_size"] = proj_size
  _check_layer_norm(layer_norm)
  if layer_norm:
    if kind == "rnn":
      raise ValueError("layer_norm: only the 'lstm' and 'gru' cells have a layer-norm "
                       "form, got cell 'rnn'")
    kwargs["layer_norm"] = True
  if nonlinearity is not None:
    if kind != "rnn":
      if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {sorted(NONLINEARITIES)}, "
                         f"got {nonlinearity!r}")
      if nonlinearity != "tanh":
        raise ValueError(f"nonlinearity: only the 'rnn' cell takes one; {kind!r} has "
                         f"fixed gate nonlinearities, got {nonlinearity!r}")
    else:
      kwargs["nonlinearity"] = nonlinearity
  if forget_bias is not None and kind == "lstm":
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, np.number)) \
        or not np.isfinite(forget_bias):
      raise ValueError(f"forget_bias: expected a number, got {forget_bias!r}")
    kwargs["forget_bias"] = forget_bias
  return CELLS[kind](hidden_size, **kwargs)
