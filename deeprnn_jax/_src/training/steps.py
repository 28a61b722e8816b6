"""Training utilities: an optax chain with global-norm clipping, pure train and eval steps.

Nothing here is device-specific: the caller jits the steps, donating the parameter and
optimizer-state buffers so that they are updated in place,

    step = jax.jit(make_train_step(loss_fn, tx), donate_argnums=(0, 1))

and the same code runs on CPU, GPU and TPU.

A loss function has the signature `loss_fn(params, batch, *, key=None, train=False)
-> (loss, metrics)`: a scalar loss and a dict of scalar metrics (e.g. accuracy). The
steps add the loss, and the train step the global gradient norm before clipping, so that
exploding gradients are visible in the logs.
"""

import math
from typing import Callable, Dict, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import optax

Metrics = Dict[str, jax.Array]
LossFn = Callable[..., Tuple[jax.Array, Metrics]]


def optimizer(learning_rate: Union[float, optax.Schedule] = 1e-3, *,
              max_norm: Optional[float] = 1.0,
              base: Callable[..., optax.GradientTransformation] = optax.adam
              ) -> optax.GradientTransformation:
  """Global-norm clipping followed by an optimizer (Adam by default).

  Clipping rescales the whole gradient g to `g * max_norm / ||g||` when its global L2
  norm exceeds `max_norm` (Pascanu et al. 2013, "On the difficulty of training recurrent
  neural networks"), which bounds the step an exploding gradient can cause without
  changing its direction.

  Args:
    learning_rate: step size given to `base`: a number, or an optax schedule (a function
      of the step count, e.g. `optax.cosine_decay_schedule(1e-3, total_steps)`), whose
      position lives in the optimizer state and so survives checkpoints.
    max_norm: the largest global gradient norm passed on to `base`; None for no
      clipping (the clip stage is then `optax.identity()`, whose state is the same
      empty state, so checkpoints stay compatible either way).
    base: an optax optimizer factory called as `base(learning_rate)`, e.g. `optax.adam`,
      `optax.sgd`.

  Returns:
    `optax.chain(optax.clip_by_global_norm(max_norm), base(learning_rate))`;
    `optax.chain(optax.identity(), base(learning_rate))` for `max_norm=None`.

  Example:
    >>> tx = optimizer(1e-3, max_norm=1.0)
    >>> opt_state = tx.init(params)
  """
  if not callable(learning_rate) and (
      isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))
      or not learning_rate > 0 or not math.isfinite(learning_rate)):
    raise ValueError(f"learning_rate: expected a positive finite number or an optax schedule, "
                     f"got {learning_rate!r}")
  if max_norm is not None and (isinstance(max_norm, bool)
                               or not isinstance(max_norm, (int, float)) or not max_norm > 0):
    raise ValueError(f"max_norm: expected a positive number or None (no clipping), "
                     f"got {max_norm!r}")
  if not callable(base):
    raise TypeError(f"base: expected an optax optimizer factory such as optax.adam, "
                    f"got {type(base).__name__}")
  # no clipping: identity, not a clip at an infinite bound, which would still compute
  # the global norm and rescale every gradient on each step (~4% of the seed model's step)
  clip = optax.identity() if max_norm is None else optax.clip_by_global_norm(float(max_norm))
  return optax.chain(clip, base(learning_rate))


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, *,
                    grad_metrics: Optional[Callable[..., Metrics]] = None):
  """Builds a pure `train_step(params, opt_state, batch, key) -> (params, opt_state, metrics)`.

  Args:
    loss_fn: `loss_fn(params, batch, *, key, train) -> (loss, metrics)`; called with
      `train=True` and the step's PRNG key (for dropout).
    tx: the optax transformation, e.g. from `optimizer`.
    grad_metrics: optional `grad_metrics(grads) -> dict` of extra scalars or arrays
      computed from the raw gradients (e.g. per-layer norms), merged into the metrics.

  Returns:
    `train_step`. Its metrics hold "loss", "grad_norm" (the global L2 norm of the
    gradient before clipping) and whatever `loss_fn` and `grad_metrics` return.

  Example:
    >>> step = jax.jit(make_train_step(loss_fn, optimizer()), donate_argnums=(0, 1))
    >>> params, opt_state, metrics = step(params, opt_state, batch, key)
  """
  if not callable(loss_fn):
    raise TypeError(f"loss_fn: expected a callable (params, batch, *, key, train) -> "
                    f"(loss, metrics), got {type(loss_fn).__name__}")
  if not hasattr(tx, "init") or not hasattr(tx, "update"):
    raise TypeError(f"tx: expected an optax GradientTransformation, got {type(tx).__name__}")

  def loss_for_grad(params, batch, key):
    return loss_fn(params, batch, key=key, train=True)

  def train_step(params, opt_state, batch, key):
    (loss, metrics), grads = jax.value_and_grad(loss_for_grad, has_aux=True)(
        params, batch, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
    if grad_metrics is not None:
      metrics.update(grad_metrics(grads))
    return params, opt_state, metrics

  return train_step


def make_eval_step(loss_fn: LossFn):
  """Builds a pure `eval_step(params, batch) -> metrics` (no dropout, no key).

  Args:
    loss_fn: as for `make_train_step`; called with `train=False, key=None`.

  Returns:
    `eval_step`, whose metrics hold "loss" and whatever `loss_fn` returns.
  """
  if not callable(loss_fn):
    raise TypeError(f"loss_fn: expected a callable (params, batch, *, key, train) -> "
                    f"(loss, metrics), got {type(loss_fn).__name__}")

  def eval_step(params, batch):
    loss, metrics = loss_fn(params, batch, key=None, train=False)
    return {**metrics, "loss": loss}

  return eval_step


def sigmoid_binary_loss(logits: jax.Array, labels: jax.Array,
                        weights: Optional[jax.Array] = None) -> Tuple[jax.Array, Metrics]:
  """Binary cross-entropy on logits, with accuracy; a weighted mean over the batch.

  Args:
    logits: [batch] real scores; the predicted probability is sigmoid(logits).
    labels: [batch] in {0, 1} (any numeric dtype).
    weights: optional [batch] non-negative example weights, e.g. 0 for the rows that pad
      the last batch of an epoch to full size; the means are over the weighted rows.

  Returns:
    (loss, {"accuracy": ..., "weight": sum of weights}), the loss and accuracy being
    weighted means. "weight" lets a caller combine batches into an exact epoch mean.
  """
  if logits.shape != labels.shape or logits.ndim != 1:
    raise ValueError(f"labels: expected the shape of logits, a vector [batch] "
                     f"{tuple(logits.shape)}, got {tuple(labels.shape)}")
  labels = labels.astype(logits.dtype)
  if weights is None:
    weights = jnp.ones_like(logits)
  elif weights.shape != logits.shape:
    raise ValueError(f"weights: expected shape {tuple(logits.shape)}, got {tuple(weights.shape)}")
  weights = weights.astype(logits.dtype)
  total = jnp.maximum(weights.sum(), 1e-12)
  losses = optax.sigmoid_binary_cross_entropy(logits, labels)
  correct = ((logits > 0).astype(logits.dtype) == labels).astype(logits.dtype)
  loss = (weights * losses).sum() / total
  return loss, {"accuracy": (weights * correct).sum() / total, "weight": weights.sum()}
