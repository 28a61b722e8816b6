"""The LSTM cell (plain, layer-normalised, projected), with its custom-JVP rule."""

from typing import Optional, Union

import jax
import jax.numpy as jnp

from deeprnn_jax._src.cells import common
from deeprnn_jax._src.core import dtypes as precision
from deeprnn_jax._src.core import initializers as inits
from deeprnn_jax._src.core.types import Cell, FastRule, LSTMState


def _step(params, carry, xp, layer_norm=False, projected=False):
  """One step given xp_t = x_t @ w_ih + b; residuals (h_{t-1}, c_{t-1}, i, f, g, o,
  tanh(c_t)) for the rule, which serves the plain cell only."""
  gates = xp + common.recurrent(params, carry.h, 4, layer_norm)  # [B, 4H]
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  f = jax.nn.sigmoid(f)
  fc = f * carry.c
  i, g = jax.nn.sigmoid(i), jnp.tanh(g)
  c = fc + i * g
  c_out = c
  if layer_norm:
    c_out = common.block_norm(c, 1) * params["ln_c_scale"] + params["ln_c_bias"]
  o = jax.nn.sigmoid(o)
  tc = jnp.tanh(c_out)
  h = o * tc
  if projected:
    h = precision.dot(h, params["w_hr"], params["b"].dtype)  # [B, P]
  y = h.astype(params["w_hh"].dtype)  # y in the compute dtype
  return (LSTMState(h, c), y), (carry.h, carry.c, i, f, g, o, tc)


def _tangent(w_hh, dcarry, u, res):
  _, c_prev, i, f, g, o, tc = res
  dpre = u + dcarry.h @ w_hh  # [B, 4H]
  di, df, dg, do = jnp.split(dpre, 4, axis=-1)
  di, df, do = di * i, df * f, do * o
  di, df, do = di - di * i, df - df * f, do - do * o  # sigmoid' = s (1 - s)
  dg = dg - dg * g * g
  dc = (df * c_prev + f * dcarry.c) + (di * g + i * dg)
  dtc = dc - dc * tc * tc
  dh = do * tc + o * dtc
  return LSTMState(dh, dc), dh


RULE = FastRule(_step, _tangent, common.hoisted_sum)


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
  `cells/common.py`), with the extra params `ln_ih_scale`, `ln_hh_scale` [4H],
  `ln_c_scale`, `ln_c_bias` [H]; h_t = sigmoid(o) * tanh(LN(c_t) * ln_c_scale + ln_c_bias)
  while the carry keeps the unnormalised c_t.

  With `proj_size=P` (Sak et al. 2014, "LSTM recurrent neural network architectures for
  large scale acoustic modeling"; PyTorch's `nn.LSTM(proj_size=)`) the output is
  projected: h_t = (sigmoid(o) * tanh(c_t)) @ w_hr, with `w_hr` [H, P] (Glorot-uniform,
  PyTorch's weight_hr transposed), so h_t, y_t and the rows of `w_hh` [P, 4H] are P wide
  while c_t stays [B, H]. Not with layer_norm; no hand-written gradient (autodiff).

  Args:
    hidden_size: H.
    forget_bias: written into the forget gate's bias block at init (default 1).
    layer_norm: the layer-normalised form.
    proj_size: P, the width of the projected output; None for none.
    kernel_init, recurrent_init, bias_init: a `jax.nn.initializers` name or a callable;
      None for Glorot-uniform, orthogonal per gate, zeros.

  Returns:
    The `Cell`.
  """
  common.check_size(hidden_size, "hidden_size")
  common.check_layer_norm(layer_norm)
  H = hidden_size
  if proj_size is not None:
    common.check_size(proj_size, "proj_size")
    if layer_norm:
      raise ValueError("proj_size: the layer-norm LSTM has no projection; expected "
                       "proj_size=None with layer_norm=True, got proj_size="
                       f"{proj_size!r}")
  P = H if proj_size is None else proj_size

  def recur(params, carry, xp):
    return _step(params, carry, xp, layer_norm, proj_size is not None)[0]

  def add_forget_bias(params, dtype):
    params["b"] = params["b"].at[H:2 * H].add(jnp.asarray(forget_bias, dtype))
    return params

  def initial_carry(batch_size, dtype=jnp.float32):
    zeros = jnp.zeros((batch_size, H), dtype)
    return LSTMState(jnp.zeros((batch_size, P), dtype), zeros)

  kernel = inits.resolve(kernel_init, "glorot_uniform", "kernel_init")
  extra = common.chain(add_forget_bias, common.add_ln_params(H, 4, True)) if layer_norm \
      else add_forget_bias
  init = common.init_fn(H, 4, kernel,
                        inits.resolve(recurrent_init, "orthogonal", "recurrent_init"),
                        inits.resolve(bias_init, "zeros", "bias_init"), extra=extra, rows=P)
  if proj_size is not None:
    return common.make_cell("lstm", H, 4, recur, _with_projection(init, kernel, H, P),
                            initial_carry, output_size=P)
  return common.make_cell("lstm", H, 4, recur, init, initial_carry, layer_norm, RULE,
                          standard="lstm")


def _with_projection(init, kernel_init, H, P):
  """`init` plus the LSTM's output projection w_hr [H, P], from a key of its own."""

  def init_proj(key, input_size, dtype=jnp.float32):
    params = init(key, input_size, dtype)
    params["w_hr"] = kernel_init(jax.random.fold_in(key, 1), (H, P), dtype)
    return params

  return init_proj
