"""The GRU cell (reset-after, PyTorch's and cuDNN's form), with its custom-JVP rule."""

from typing import Union

import jax
import jax.numpy as jnp

from deeprnn_jax._src.cells import common
from deeprnn_jax._src.core import initializers as inits
from deeprnn_jax._src.core.types import Cell, FastRule


def _step(params, h, xp, layer_norm=False):
  """One step given xp_t = x_t @ w_ih + b; residuals (h_{t-1}, r, z, n, hn + b_hn)."""
  hp = common.recurrent(params, h, 3, layer_norm)  # [B, 3H]
  xr, xz, xn = jnp.split(xp, 3, axis=-1)
  hr, hz, hn = jnp.split(hp, 3, axis=-1)
  r = jax.nn.sigmoid(xr + hr)
  z = jax.nn.sigmoid(xz + hz)
  hnb = hn + params["b_hn"]
  n = jnp.tanh(xn + r * hnb)
  h_new = (1.0 - z) * n + z * h
  return (h_new, h_new.astype(params["w_hh"].dtype)), (h, r, z, n, hnb)  # y: compute dtype


def _tangent(w_hh, dh, u, res):
  h, r, z, n, hnb = res
  H = h.shape[-1]
  dhp = dh @ w_hh  # [B, 3H]
  u_rz, u_xn, u_hn = jnp.split(u, [2 * H, 3 * H], axis=-1)
  dr, dz = jnp.split(u_rz + dhp[..., :2 * H], 2, axis=-1)
  dr, dz = dr * r, dz * z
  dr, dz = dr - dr * r, dz - dz * z
  dhnb = u_hn + dhp[..., 2 * H:]
  dn = u_xn + (dr * hnb + r * dhnb)
  dn = dn - dn * n * n
  dh_new = (dz * h - dz * n) + (dn - z * dn) + z * dh
  return dh_new, dh_new


def _hoisted(params, dparams, xs, dxs, h_prev):
  dxp, dhp = common.hoisted_dense(params, dparams, xs, dxs, h_prev)
  H = h_prev.shape[-1]
  # r and z read xp + hp; n reads xn and r * (hn + b_hn) apart: [xr'+hr', xz'+hz', xn', hn'+b_hn']
  return jnp.concatenate([dxp[..., :2 * H] + dhp[..., :2 * H], dxp[..., 2 * H:],
                          dhp[..., 2 * H:] + dparams["b_hn"]], axis=-1)  # [T, B, 4H]


RULE = FastRule(_step, _tangent, _hoisted)


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
  gate block (`cells/common.py`), with the extra params `ln_ih_scale`, `ln_hh_scale` [3H];
  b_hn stays the shift of the normalised hn, so n = tanh(xn + r * (LN(hn) * s + b_hn)).

  Args:
    hidden_size: H.
    layer_norm: the layer-normalised form.
    kernel_init, recurrent_init, bias_init: a `jax.nn.initializers` name or a callable;
      None for Glorot-uniform, orthogonal per gate, zeros (b and b_hn).

  Returns:
    The `Cell`.
  """
  common.check_size(hidden_size, "hidden_size")
  common.check_layer_norm(layer_norm)
  H = hidden_size
  bias = inits.resolve(bias_init, "zeros", "bias_init")

  def recur(params, h, xp):
    return _step(params, h, xp, layer_norm)[0]

  def add_b_hn(params, dtype):
    params["b_hn"] = bias(jax.random.key(0), (H,), dtype)
    return params

  extra = common.chain(add_b_hn, common.add_ln_params(H, 3, False)) if layer_norm \
      else add_b_hn
  init = common.init_fn(H, 3, inits.resolve(kernel_init, "glorot_uniform", "kernel_init"),
                        inits.resolve(recurrent_init, "orthogonal", "recurrent_init"),
                        bias, extra=extra)
  # the GRU reads h in its update too, so recurrent dropout masks w_hh's rows instead
  return common.make_cell("gru", H, 3, recur, init, common.h_carry(H), layer_norm, RULE,
                          standard="gru", recurrent_mask="weights")
