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

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.core import layout
from deeprnn_jax._src.core import masking
from deeprnn_jax._src.core import dtypes as precision
from deeprnn_jax._src.core import sharding
from deeprnn_jax._src.layers import bidirectional as bidir
from deeprnn_jax._src.layers.base import Context
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


jax.export.register_namedtuple_serialization(
    GradientNorms, serialized_name="deeprnn_jax.diagnostics.GradientNorms")


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
  if hasattr(carry, "h"):  # LSTMState, or a user cell's named carry
    return carry._replace(h=carry.h + eps)
  return carry + eps


def _perturbed_loop(cell, params, xs, carry, lengths=None, *, reverse=False, resets=None,
                    eps=None):
  """A time loop (`unroll.scan_layer`'s contract) that adds eps_t [T, B, H] to h_t.

  The perturbed h_t is both the carry into the next step and the output y_t read by the
  layer above (y_t is h_t in every cell of the library), so the gradient with respect
  to eps_t is the total derivative dLoss/dh_t. As in `scan_layer`, steps past a
  sequence's length leave the carry untouched and output zero, so there eps_t touches
  nothing and its gradient is 0. `eps` holds one array per direction.
  """
  if resets is not None:
    raise ValueError("resets: the gradient diagnostics do not take segment resets")
  e = eps[1 if reverse else 0]
  steps = jnp.arange(xs.shape[0], dtype=jnp.int32)

  def body(c, inp):
    x_t, eps_t, t = inp
    new_c, y = cell.step(params, c, x_t)
    new_c, y = _perturb(new_c, eps_t), y + eps_t.astype(y.dtype)
    if lengths is None:
      return new_c, y
    return masking.mask_step(t < lengths, new_c, c, y)

  return lax.scan(body, carry, (xs, e, steps), reverse=reverse)


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
    state = model.initial_state(B, precision.dtypes(model.compute_dtype, params, xs.dtype).state)
  elif model.bidirectional:
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
  policy = precision.dtypes(model.compute_dtype, params, xs.dtype)
  names = ("fwd", "bwd") if model.bidirectional else (None,)

  def loss_of(params, eps):
    # the model's own layers and precision policy, evaluation mode: the function
    # `apply` computes, with eps added to every hidden state
    params, h = precision.prepare(policy, params, xs)
    h = jnp.swapaxes(h, 0, 1)  # [T, B, F]
    for l, layer in enumerate(model.layers):
      ctx = Context(time_loop=partial(_perturbed_loop, eps=eps[l]), lengths=lengths,
                    index=l, state_dtype=policy.state, compute_dtype=policy.compute)
      h, _ = layer.run(layout.layer_params(model.groups, params, l), h, state[l], ctx)
    return _check_loss(loss_fn(jnp.swapaxes(h, 0, 1)))  # [B, T, D*H]

  eps_dtype = jax.tree.leaves(state)[0].dtype
  eps = tuple(tuple(jnp.zeros((T, B, layer.width // len(names)), eps_dtype) for _ in names)
              for layer in model.layers)
  axes = sharding.batch_axes(xs, 0)  # scan carries typed with the batch's sharding
  state, eps = sharding.follow_batch(state, axes, 0), sharding.follow_batch(eps, axes, 1)
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
