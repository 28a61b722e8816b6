"""Gradient diagnostics: how large gradients are per layer and per time step.

Deep RNNs are hard to train because gradients shrink (vanish) or grow (explode) as they
flow back through time and depth: backpropagation multiplies one Jacobian dH_t/dH_{t-1}
per step, and their product decays or blows up geometrically (Bengio et al. 1994;
Pascanu et al. 2013). `state_gradient_norms` measures dLoss/dH_t^l for every layer l and
step t of any stack `stacked_rnn` builds; `param_gradient_norms` gives the per-layer
norms of a parameter gradient.
"""

from functools import partial
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from jax import lax

from deeprnn_jax._src import bidirectional as bidir
from deeprnn_jax._src import checks
from deeprnn_jax._src.base import LSTMState
from deeprnn_jax._src.stack import StackedRNN, layer_params


class GradientNorms(NamedTuple):
  """What `state_gradient_norms` measured.

  Attributes:
    loss: the scalar loss.
    state: [layers, time]; entry (l, t) is the norm of dLoss/dH_t^l, the total
      derivative with respect to layer l's hidden state at step t, averaged over the
      batch rows for which step t is valid. A bidirectional layer's state is its
      [forward | backward] pair of hidden states.
    params: [layers]; the L2 norm of each layer's parameter gradient.
    global_norm: the L2 norm of the whole parameter gradient.
    clipped_global_norm: the same after `optax.clip_by_global_norm(max_norm)`, or None
      when no `max_norm` was given.
  """

  loss: jax.Array
  state: jax.Array
  params: jax.Array
  global_norm: jax.Array
  clipped_global_norm: Optional[jax.Array]


def param_gradient_norms(model: StackedRNN, grads) -> jax.Array:
  """The L2 norm of each layer's parameter gradient.

  Args:
    model: the StackedRNN the gradients belong to.
    grads: gradients with the structure of `model.init`'s params (a tuple of per-group
      dicts with leaves stacked [layers_in_group, ...]).

  Returns:
    [num_layers] float array: entry l is the L2 norm over all of layer l's parameter
    gradients (w_ih, w_hh, b, ...) together.

  Example:
    >>> grads = jax.grad(loss)(params)
    >>> param_gradient_norms(model, grads)   # [L]
  """
  norms = []
  for l in range(len(model.cells)):
    leaves = jax.tree.leaves(layer_params(model, grads, l))
    norms.append(jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in leaves)))
  return jnp.stack(norms)


def _perturb(carry, eps):
  """Adds `eps` to the hidden state h of a carry (h of an LSTM, never its c)."""
  if isinstance(carry, LSTMState):
    return LSTMState(carry.h + eps, carry.c)
  return carry + eps


def _perturbed_direction(cell, params, xs, carry, eps, lengths, reverse):
  """One direction of one layer over time with `eps` [T, B, H] added to h_t.

  The perturbed h_t is both the carry into the next step and the output y_t read by the
  layer above (y_t is h_t in every cell of the library), so the gradient with respect
  to eps_t is the total derivative dLoss/dh_t. As in `scan_layer`, steps past a
  sequence's length leave the carry untouched and output zero, so there eps_t touches
  nothing and its gradient is 0. The carry keeps its own dtype between steps while the
  step computes in the dtype of `xs` (the policy of `stacked_rnn(compute_dtype=)`).
  """
  xp = cell.project(params, xs)  # [T, B, G*H]
  steps = jnp.arange(xs.shape[0], dtype=jnp.int32)
  compute = lambda c: jax.tree.map(lambda a: a.astype(xs.dtype), c)

  def body(c, inp):
    xp_t, eps_t, t = inp
    new_c, y = cell.recur(params, compute(c), xp_t)
    new_c = jax.tree.map(lambda n, o: n.astype(o.dtype), new_c, c)
    new_c, y = _perturb(new_c, eps_t), y + eps_t.astype(y.dtype)
    if lengths is not None:  # the masking rule of `scan_layer`
      valid = (t < lengths)[:, None]  # [B, 1]
      new_c = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new_c, c)
      y = jnp.where(valid, y, 0)
    return new_c, y

  _, ys = lax.scan(body, carry, (xp, eps, steps), reverse=reverse)
  return ys  # [T, B, H]


def _compute_dtype(model, xs):
  """The dtype `model.apply` computes in: its `compute_dtype`, else that of xs."""
  dtype = getattr(model, "compute_dtype", None)
  return jnp.dtype(xs.dtype) if dtype is None else jnp.dtype(dtype)


def _param_dtype(params):
  floating = [a.dtype for a in jax.tree.leaves(params) if jnp.issubdtype(a.dtype, jnp.floating)]
  return floating[0] if floating else jnp.float32


def _cast(tree, dtype):
  return jax.tree.map(
      lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _check_loss(loss, argname="loss_fn"):
  if not hasattr(loss, "shape") or loss.shape != ():
    shape = getattr(loss, "shape", type(loss).__name__)
    raise ValueError(f"{argname}: expected a function returning a scalar loss, "
                     f"got a result of shape {shape}")
  return loss


def state_gradient_norms(model: StackedRNN, params, xs, loss_fn: Callable[[jax.Array], jax.Array],
                         *, lengths=None, initial_state=None,
                         max_norm: Optional[float] = None) -> GradientNorms:
  """Gradient norms per layer and time step, dLoss/dH_t^l, and per layer for params.

  Zero perturbations eps_t^l [B, H_l] are added to every hidden state h_t^l (h, not c,
  of an LSTM) and the loss is differentiated with respect to them: dLoss/d eps_t^l is
  exactly the total derivative dLoss/dh_t^l, through both the next step of layer l and
  layer l+1 at step t. Layers run one at a time (any widths), each a `lax.scan` over
  time, in evaluation mode (no dropout). It compiles once per (model, loss_fn) pair
  and input shapes, so pass the same `loss_fn` object each call; it also runs inside
  `jax.jit` (with `lengths` and `max_norm` traced).

  Args:
    model: a StackedRNN from `stacked_rnn`.
    params: its parameters.
    xs: inputs [batch, time, input_size].
    loss_fn: `loss_fn(ys) -> scalar`, given the top layer's outputs
      [batch, time, hidden_sizes[-1]] ([batch, time, 2 * hidden_sizes[-1]] when
      bidirectional), as `model.apply` returns them.
    lengths: optional int [batch]; steps past a sequence's length have zero gradient
      and are left out of the batch average.
    initial_state: optional tuple with one carry per layer (zeros by default).
    max_norm: if given, also report the global norm after
      `optax.clip_by_global_norm(max_norm)` (Pascanu et al. 2013).

  Returns:
    GradientNorms(loss, state [layers, time], params [layers], global_norm,
    clipped_global_norm).

  Example:
    >>> model = stacked_rnn("rnn", input_size=8, hidden_sizes=(32, 32))
    >>> params = model.init(jax.random.key(0))
    >>> xs = jnp.ones((4, 50, 8))
    >>> r = state_gradient_norms(model, params, xs, lambda ys: ys[:, -1].sum())
    >>> r.state.shape   # (2, 50): small at t = 0, far from the loss at t = 49
  """
  if not isinstance(model, StackedRNN):
    raise TypeError(f"model: expected a StackedRNN from stacked_rnn, "
                    f"got {type(model).__name__}")
  if not callable(loss_fn):
    raise TypeError(f"loss_fn: expected a callable ys -> scalar, got {type(loss_fn).__name__}")
  checks.check_xs(xs, model.input_size)
  B, T, _ = xs.shape
  lengths = checks.check_lengths(lengths, B, T)
  if initial_state is None:
    state = model.initial_state(B, jnp.promote_types(_param_dtype(params),
                                                     _compute_dtype(model, xs)))
  elif getattr(model, "bidirectional", False):
    state = bidir.check_state(initial_state, model.cells, B)
  else:
    state = checks.check_initial_state(initial_state, model.cells, B)
  if max_norm is not None and checks.is_concrete(max_norm):
    try:
      positive = float(max_norm) > 0
    except (TypeError, ValueError):
      positive = False
    if not positive:
      raise ValueError(f"max_norm: expected a positive number, got {max_norm!r}")

  return _state_gradient_norms(model, loss_fn, params, xs, lengths, state, max_norm)


@partial(jax.jit, static_argnums=(0, 1))
def _state_gradient_norms(model, loss_fn, params, xs, lengths, state, max_norm):
  """The work of `state_gradient_norms`, compiled once per (model, loss_fn) and shapes.

  Jitting here, not only in the caller, matters: run eagerly, the scans and their
  gradients compile piece by piece, several times slower than one compile.
  """
  B, T, _ = xs.shape
  bidirectional = getattr(model, "bidirectional", False)
  residual = getattr(model, "residual", False)
  dtype = _compute_dtype(model, xs)
  names = ("fwd", "bwd") if bidirectional else (None,)

  def loss_of(params, eps):
    h = jnp.swapaxes(xs, 0, 1).astype(dtype)  # [T, B, F]
    for l, cell in enumerate(model.cells):
      p = _cast(layer_params(model, params, l), dtype)
      ys = [_perturbed_direction(cell, p if name is None else p[name], h,
                                 state[l] if name is None else state[l][d], eps[l][d],
                                 lengths, reverse=d == 1)
            for d, name in enumerate(names)]
      y = jnp.concatenate(ys, axis=-1)  # [T, B, D*H]
      h = y + h if residual and l > 0 and y.shape[-1] == h.shape[-1] else y
    return _check_loss(loss_fn(jnp.swapaxes(h, 0, 1)))  # [B, T, D*H]

  eps_dtype = jax.tree.leaves(state)[0].dtype
  eps = tuple(tuple(jnp.zeros((T, B, c.hidden_size), eps_dtype) for _ in names)
              for c in model.cells)
  loss, (grads, eps_grads) = jax.value_and_grad(loss_of, argnums=(0, 1))(params, eps)

  # a bidirectional layer's state is [forward | backward]: one norm over both halves
  per_row = jnp.stack([jnp.sqrt(sum(jnp.sum(jnp.square(g), axis=-1) for g in layer))
                       for layer in eps_grads])  # [L, T, B]
  if lengths is None:
    state_norms = per_row.mean(axis=-1)
  else:
    valid = jnp.arange(T)[:, None] < lengths[None, :]  # [T, B]
    count = valid.sum(axis=-1).astype(per_row.dtype)
    state_norms = per_row.sum(axis=-1) / jnp.maximum(count, 1)

  clipped = None
  if max_norm is not None:
    clip = optax.clip_by_global_norm(max_norm)
    clipped_grads, _ = clip.update(grads, clip.init(params))
    clipped = optax.tree.norm(clipped_grads)
  return GradientNorms(loss=loss, state=state_norms,
                       params=param_gradient_norms(model, grads),
                       global_norm=optax.tree.norm(grads), clipped_global_norm=clipped)
