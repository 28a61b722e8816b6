"""A time scan whose gradient keeps only the sequential work inside the loop.

Autodiff of a plain `lax.scan` over `h_t = cell(h_{t-1} @ w_hh + xp_t)` accumulates
dW_hh += h_{t-1}^T @ dgates_t inside the backward loop: a thin matmul (contracting over
the batch only) and a read-modify-write of the whole [H, G*H] gradient at every step.
Here the recurrence has a custom JVP instead. The tangent of w_hh enters through
U = xp' + H_prev @ w_hh', one matmul over all steps before the tangent scan, and the
tangent scan carries only (dh, dc) through the one in-loop matmul dh @ w_hh. Reverse mode
transposes that: the backward loop propagates dh (and dc) alone, and afterwards
dW_hh = H_prev^T @ dGates is one [H, T*B] x [T*B, G*H] matmul. Being a JVP rule, it
also serves forward mode (`jax.jvp`, `jax.jacfwd`) and higher derivatives.

Every operation of the tangent step involves a tangent, so that partial evaluation
leaves nothing of it in the forward pass: the saved residuals are exactly the gate
activations the forward step computes anyway (7H per step and row for the LSTM).

A cell declares its rule (`Cell.fast_rule`, a `FastRule`): the plain RNN, LSTM and GRU
of cells.py use the rules below, written op for op as their `recur` (the tests compare
values and gradients with autodiff of the plain scan). A cell without a rule, a layer-norm
cell, or a cell a wrapper changed (recurrent dropout, a compute dtype other than the
carry's: the wrappers drop the rule) gets autodiff of the plain scan.
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src import masking
from deeprnn_jax._src import precision
from deeprnn_jax._src.base import LSTMState



class FastRule(NamedTuple):
  """A cell's hand-written JVP for the time scan (the cell declares it; see module doc).

  Attributes:
    step: `step(params, carry, xp_t) -> ((carry, y), residuals)`, op for op the cell's
      `recur`, also returning what `tangent` needs.
    tangent: `tangent(w_hh, dcarry, u_t, residuals) -> (dcarry, dy)`, the in-loop part
      of the JVP; every op reads a tangent.
    hoisted: `hoisted(params, dparams, xs, dxs, h_prev) -> u [T, B, ...]`, the tangent
      parts that need no recurrence, for all steps at once.
  """

  step: Callable
  tangent: Callable
  hoisted: Callable


# --------------------------------------------------------------------------------------
# Forward steps, op for op the `recur` of cells.py, also returning what the tangent needs.


def _rnn_step(act):
  def step(params, h, xp):
    h_new = act(xp + precision.dot(h, params["w_hh"], params["b"].dtype))
    y = h_new.astype(params["w_hh"].dtype)
    return (h_new, y), (h, h_new)  # residuals: h_{t-1}, h_t

  return step


def _lstm_step(params, carry, xp):
  gates = xp + precision.dot(carry.h, params["w_hh"], params["b"].dtype)  # [B, 4H]
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  f = jax.nn.sigmoid(f)  # this order is cells.py's: the same ops give the same numbers
  fc = f * carry.c
  i, g = jax.nn.sigmoid(i), jnp.tanh(g)
  c = fc + i * g
  o = jax.nn.sigmoid(o)
  tc = jnp.tanh(c)
  h = o * tc
  y = h.astype(params["w_hh"].dtype)
  return (LSTMState(h, c), y), (carry.h, carry.c, i, f, g, o, tc)


def _gru_step(params, h, xp):
  hp = precision.dot(h, params["w_hh"], params["b"].dtype)  # [B, 3H]
  xr, xz, xn = jnp.split(xp, 3, axis=-1)
  hr, hz, hn = jnp.split(hp, 3, axis=-1)
  r = jax.nn.sigmoid(xr + hr)
  z = jax.nn.sigmoid(xz + hz)
  hnb = hn + params["b_hn"]
  n = jnp.tanh(xn + r * hnb)
  h_new = (1.0 - z) * n + z * h
  y = h_new.astype(params["w_hh"].dtype)
  return (h_new, y), (h, r, z, n, hnb)


def _project(params, x):
  return precision.dot(x, params["w_ih"], params["b"].dtype) + params["b"]


# --------------------------------------------------------------------------------------
# Tangent steps: (dcarry, per-step hoisted tangent, residuals) -> (dcarry, dy).
# Written so that every op reads a tangent: no part of them runs in the forward pass.


def _rnn_tangent(relu):
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


def _lstm_tangent(w_hh, dcarry, u, res):
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


def _gru_tangent(w_hh, dh, u, res):
  h, r, z, n, hnb = res
  dhp = dh @ w_hh  # [B, 3H]
  u_rz, u_xn, u_hn = jnp.split(u, [2 * h.shape[-1], 3 * h.shape[-1]], axis=-1)
  dpre_rz = u_rz + dhp[..., :2 * h.shape[-1]]
  dr, dz = jnp.split(dpre_rz, 2, axis=-1)
  dr, dz = dr * r, dz * z
  dr, dz = dr - dr * r, dz - dz * z
  dhnb = u_hn + dhp[..., 2 * h.shape[-1]:]
  dn = u_xn + (dr * hnb + r * dhnb)
  dn = dn - dn * n * n
  dh_new = (dz * h - dz * n) + (dn - z * dn) + z * dh
  return dh_new, dh_new




def _hoisted_dense(params, dparams, xs, dxs, h_prev):
  """The tangent parts that need no recurrence, for all steps at once: [T, B, G*H] each.

  Each is one matmul over all T*B rows; in reverse mode they become the weight gradients
  X^T @ dGates and H_prev^T @ dGates and the input gradient dGates @ w_ih^T.
  """
  dxp = (jnp.einsum("tbf,fg->tbg", dxs, params["w_ih"])
         + jnp.einsum("tbf,fg->tbg", xs, dparams["w_ih"]) + dparams["b"])  # [T, B, G*H]
  dhp = jnp.einsum("tbh,hg->tbg", h_prev, dparams["w_hh"])  # [T, B, G*H]
  return dxp, dhp


def _hoisted_sum(params, dparams, xs, dxs, h_prev):
  dxp, dhp = _hoisted_dense(params, dparams, xs, dxs, h_prev)
  return dxp + dhp


def _hoisted_gru(params, dparams, xs, dxs, h_prev):
  dxp, dhp = _hoisted_dense(params, dparams, xs, dxs, h_prev)
  H = h_prev.shape[-1]
  # r and z read xp + hp; n reads xn and r * (hn + b_hn) apart: [xr'+hr', xz'+hz', xn', hn'+b_hn']
  return jnp.concatenate([dxp[..., :2 * H] + dhp[..., :2 * H], dxp[..., 2 * H:],
                          dhp[..., 2 * H:] + dparams["b_hn"]], axis=-1)  # [T, B, 4H]


RNN_TANH = FastRule(_rnn_step(jnp.tanh), _rnn_tangent(False), _hoisted_sum)
RNN_RELU = FastRule(_rnn_step(jax.nn.relu), _rnn_tangent(True), _hoisted_sum)
LSTM = FastRule(_lstm_step, _lstm_tangent, _hoisted_sum)
GRU = FastRule(_gru_step, _gru_tangent, _hoisted_gru)


def applies(rule, params, carry, x_t) -> bool:
  """Whether `rule` can run this layer: dense kernels, and one dtype throughout (the
  tangents are not written for mixed precision)."""
  if rule is None or not isinstance(params, dict) or any(
      getattr(params.get(k), "ndim", None) != n for k, n in (("w_ih", 2), ("w_hh", 2), ("b", 1))):
    return False
  return len({jnp.dtype(a.dtype) for a in jax.tree.leaves((params, carry, x_t))}) == 1


# --------------------------------------------------------------------------------------
# The recurrence with its JVP rule.


def _forward(rule, params, carry, xs, valid, reverse, unroll, keep):
  """The forward scan; with `keep`, also the residuals of every step.

  The input projection runs inside the loop, one [B, F] x [F, G*H] matmul per step: on
  the CPU that beats one hoisted [T*B, F] matmul, whose [T, B, G*H] result costs more in
  memory traffic than the small matmuls lose in efficiency.
  """
  def body(c, inp):
    x_t, valid_t = inp
    (new_c, y), res = rule.step(params, c, _project(params, x_t))
    if valid_t is not None:
      new_c, y = masking.mask_step(valid_t, new_c, c, y)
    return new_c, (y, res if keep else None)

  final, (ys, res) = lax.scan(body, carry, (xs, valid), reverse=reverse, unroll=unroll)
  return final, ys, res


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _recurrence(rule, reverse, unroll, params, carry, xs, valid):
  final, ys, _ = _forward(rule, params, carry, xs, valid, reverse, unroll, keep=False)
  return final, ys


@_recurrence.defjvp
def _recurrence_jvp(rule, reverse, unroll, primals, tangents):
  params, carry, xs, valid = primals
  dparams, dcarry, dxs, _ = tangents
  final, ys, res = _forward(rule, params, carry, xs, valid, reverse, unroll, keep=True)
  u = rule.hoisted(params, dparams, xs, dxs, res[0])
  w_hh = params["w_hh"]

  def body(dc, inp):
    u_t, res_t, valid_t = inp
    new_dc, dy = rule.tangent(w_hh, dc, u_t, res_t)
    if valid_t is not None:
      new_dc, dy = masking.mask_step(valid_t, new_dc, dc, dy)
    return new_dc, dy

  dfinal, dys = lax.scan(body, dcarry, (u, res, valid), reverse=reverse, unroll=unroll)
  return (final, ys), (dfinal, dys)


def recurrence(rule, params, carry, xs, lengths=None, *, reverse=False, unroll=1):
  """Runs `rule.step` over xs [T, B, F] with the custom-JVP gradient.

  Args:
    rule: the cell's FastRule (`applies` must hold).
    params: the layer's parameters (w_ih, w_hh, b, and b_hn for the GRU).
    carry: initial carry.
    xs: the inputs [T, B, F] (time-major).
    lengths: optional int [B]; steps t >= lengths[b] leave sequence b untouched.
    reverse, unroll: as in `lax.scan`.

  Returns:
    (final carry, ys [T, B, H]), the numbers of `cell.step` looped over time.
  """
  valid = masking.valid_steps(xs.shape[0], lengths)  # [T, B] or None
  return _recurrence(rule, reverse, unroll, params, carry, xs, valid)
