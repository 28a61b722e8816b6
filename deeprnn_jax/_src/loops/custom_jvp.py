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

A cell declares its rule (`Cell.fast_rule`, a `core.types.FastRule`): the plain RNN,
LSTM and GRU declare theirs beside their equations in cells/ (the rule's step *is* the
cell's recurrence; the tests compare values and gradients with autodiff of the plain scan). A cell without a rule, a layer-norm
cell, or a cell a wrapper changed (recurrent dropout, a compute dtype other than the
carry's: the wrappers drop the rule) gets autodiff of the plain scan.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from deeprnn_jax._src.core import masking
from deeprnn_jax._src.core import dtypes as precision


def _project(params, x):
  return precision.dot(x, params["w_ih"], params["b"].dtype) + params["b"]


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
