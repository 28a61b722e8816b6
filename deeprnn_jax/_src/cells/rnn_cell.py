"""The simple (Elman) RNN cell, tanh or ReLU, with its custom-JVP rule."""

from typing import Union

import jax
import jax.numpy as jnp

from deeprnn_jax._src.cells import common
from deeprnn_jax._src.core import dtypes as precision
from deeprnn_jax._src.core import initializers as inits
from deeprnn_jax._src.core.types import Cell, FastRule

NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _step(act):
  """h_t = act(xp_t + h_{t-1} @ w_hh); residuals (h_{t-1}, h_t)."""

  def step(params, h, xp):
    h_new = act(xp + precision.dot(h, params["w_hh"], params["b"].dtype))
    return (h_new, h_new.astype(params["w_hh"].dtype)), (h, h_new)  # y in the compute dtype

  return step


def _tangent(relu):
  def tangent(w_hh, dh, u, res):
    _, h_new = res
    dpre = u + dh @ w_hh
    if relu:
      dh_new = jnp.where(h_new > 0, dpre, jnp.zeros_like(dpre))
    else:
      a = dpre * h_new
      dh_new = dpre - a * h_new  # (1 - h^2) dpre
    return dh_new, dh_new

  return tangent


RULES = {name: FastRule(_step(act), _tangent(name == "relu"), common.hoisted_sum)
         for name, act in NONLINEARITIES.items()}


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

  Args:
    hidden_size: H.
    nonlinearity: "tanh" (default) or "relu".
    kernel_init, recurrent_init, bias_init: a `jax.nn.initializers` name or a callable
      (key, shape, dtype); None for the defaults above.

  Returns:
    The `Cell`.

  Example:
    >>> cell = rnn(8)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> h, y = cell.step(params, cell.initial_carry(2), jnp.ones((2, 3)))
  """
  common.check_size(hidden_size, "hidden_size")
  if nonlinearity not in NONLINEARITIES:
    raise ValueError(f"nonlinearity: expected one of {sorted(NONLINEARITIES)}, "
                     f"got {nonlinearity!r}")
  default_kernel = "he_uniform" if nonlinearity == "relu" else "glorot_uniform"
  rule = RULES[nonlinearity]
  init = common.init_fn(hidden_size, 1,
                        inits.resolve(kernel_init, default_kernel, "kernel_init"),
                        inits.resolve(recurrent_init, "orthogonal", "recurrent_init"),
                        inits.resolve(bias_init, "zeros", "bias_init"))
  return common.make_cell("rnn", hidden_size, 1, common.without_residuals(rule.step), init,
                          common.h_carry(hidden_size), fast_rule=rule,
                          standard=f"rnn_{nonlinearity}")
