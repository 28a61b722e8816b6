"""Truncated backpropagation through time (Williams & Peng 1990) over chunks of K steps.

A long sequence [batch, time, features] is cut into chunks of K steps. The state flows
forward from one chunk to the next, but `lax.stop_gradient` cuts it on the way back, so no
gradient crosses a chunk boundary: the cost of the backward pass is bounded by K steps, not
T (PyTorch users do this by hand with `hidden.detach()`). `tbptt_apply` is the forward
pass (its gradient is the truncated one); `tbptt_train` makes one optimizer update per
chunk, carrying the state, as the classic language-model trainers do.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.core import layout
from deeprnn_jax._src.core import dtypes as precision
from deeprnn_jax._src.core import sharding
from deeprnn_jax._src.stack import StackedRNN


def _chunked(a, chunk_size, n_chunks):
  """[B, T, ...] -> [n_chunks, B, K, ...], the time axis zero-padded to n_chunks * K."""
  return jnp.swapaxes(layout.chunk_time(a, n_chunks, chunk_size, axis=1), 0, 1)


def _chunk_lengths(lengths, B, T, chunk_size, n_chunks):
  """Per-chunk lengths [n, B]: None when every chunk is full and no lengths were given."""
  if lengths is None and T == n_chunks * chunk_size:
    return None
  lengths = jnp.full((B,), T, jnp.int32) if lengths is None else lengths
  starts = jnp.arange(n_chunks, dtype=jnp.int32)[:, None] * chunk_size  # [n, 1]
  return jnp.clip(lengths[None, :] - starts, 0, chunk_size)  # [n, B]


def _chunk_keys(model, key, n_chunks):
  """One dropout key per chunk: the same key everywhere when every mask is per sequence
  (then the chunks see the masks of one whole-sequence pass), else one key per chunk."""
  if key is None:
    return None
  if model.dropout == 0 or model.variational:
    return jnp.stack([key] * n_chunks)
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n_chunks))


def tbptt_apply(model: StackedRNN, params, xs, chunk_size: int, lengths=None,
                initial_state=None, *, train=False, key=None):
  """`model.apply` over chunks of `chunk_size` steps, without gradients across chunks.

  The forward values equal `model.apply(params, xs, lengths, initial_state)` (the state
  is carried across chunks); the gradient of anything computed from them is truncated:
  the state entering each chunk, `initial_state` included, is `lax.stop_gradient`-ed.
  T need not be a multiple of `chunk_size` (the last chunk is padded and masked).

  Args:
    model: a causal (not bidirectional) `stacked_rnn`.
    params: its parameters.
    xs: inputs [batch, time, input_size].
    chunk_size: K, the number of steps between gradient cuts.
    lengths: optional int [batch], as for `apply`.
    initial_state: optional state, as for `apply`.
    train, key: as for `apply`. Models whose dropout is all per sequence (`variational`
      or no between-layer dropout) use `key` for every chunk, so their masks are those of
      one whole-sequence pass; others fold the chunk index into `key`.

  Returns:
    (ys [batch, time, D*H], final state), as `model.apply` with output="sequence".
  """
  if model.bidirectional:
    raise ValueError("model: truncated BPTT carries the state forward in time, so it needs "
                     "a causal model; expected bidirectional=False, got bidirectional=True")
  checks.check_positive_int(chunk_size, "chunk_size")
  checks.check_xs(xs, model.input_size)
  B, T, _ = xs.shape
  lengths = checks.check_lengths(lengths, B, T)
  n_chunks = -(-T // chunk_size)
  if initial_state is None:
    initial_state = model.initial_state(
        B, precision.dtypes(model.compute_dtype, params, xs.dtype).state)
  else:  # a tuple of carries, as `apply` returns it, so that the chunk scan's carry matches
    initial_state = checks.check_initial_state(initial_state, model.cells, B)
  # the chunk scan's carry: typed with the batch's sharding, as each chunk returns it
  initial_state = sharding.follow_batch(initial_state, sharding.batch_axes(xs, 0), 0)
  keys = _chunk_keys(model, key, n_chunks)

  def body(state, inp):
    x, lens, k = inp
    ys, state = model.apply(params, x, lens, lax.stop_gradient(state), train=train, key=k)
    return state, ys

  inputs = (_chunked(xs, chunk_size, n_chunks),
            _chunk_lengths(lengths, B, T, chunk_size, n_chunks), keys)
  state, ys = lax.scan(body, initial_state, inputs)  # ys [n, B, K, H]
  ys = jnp.swapaxes(ys, 0, 1).reshape(B, n_chunks * chunk_size, -1)  # [B, n*K, H]
  return ys[:, :T], state


def tbptt_train(loss_fn: Callable, optimizer: optax.GradientTransformation, params, opt_state,
                state, xs, targets, chunk_size: int, lengths=None, *, key=None):
  """Truncated BPTT training: one optimizer update per chunk of `chunk_size` steps.

  Each chunk's loss is differentiated with the state entering it held constant
  (`lax.stop_gradient`), the optimizer updates the params, and the chunk's final state
  starts the next chunk, computed with the updated params from there on.

  Args:
    loss_fn: `loss_fn(params, state, xs_chunk, targets_chunk, lengths_chunk, key) ->
      (loss, new_state)`, e.g. a model's `apply` on the chunk followed by a head and a
      masked loss; xs_chunk [batch, K, ...], targets_chunk [batch, K, ...],
      lengths_chunk int [batch] (the valid steps of the chunk, 0 to K).
    optimizer: an optax GradientTransformation.
    params, opt_state: the trained pytree and `optimizer.init(params)`.
    state: the model state entering the first chunk (e.g. `model.initial_state(batch)`).
    xs: inputs [batch, time, ...]; targets: [batch, time, ...], chunked the same way.
    chunk_size: K; the last chunk is padded (its lengths mark the padding).
    lengths: optional int [batch]; None means every sequence is `time` steps long.
    key: optional PRNG key; chunk i gets `fold_in(key, i)`.

  Returns:
    (params, opt_state, state, losses [number of chunks]).
  """
  checks.check_positive_int(chunk_size, "chunk_size")
  B, T = xs.shape[:2]
  lengths = checks.check_lengths(lengths, B, T)
  n_chunks = -(-T // chunk_size)
  lens = _chunk_lengths(jnp.full((B,), T, jnp.int32) if lengths is None else lengths,
                        B, T, chunk_size, n_chunks)
  keys = None if key is None else jax.vmap(lambda i: jax.random.fold_in(key, i))(
      jnp.arange(n_chunks))
  state = sharding.follow_batch(state, sharding.batch_axes(xs, 0), 0)

  def body(carry, inp):
    params, opt_state, state = carry
    x, y, lens_c, k = inp
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, state), grads = grad_fn(params, lax.stop_gradient(state), x, y, lens_c, k)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state, state), loss

  inputs = (_chunked(xs, chunk_size, n_chunks), _chunked(targets, chunk_size, n_chunks),
            lens, keys)
  (params, opt_state, state), losses = lax.scan(body, (params, opt_state, state), inputs)
  return params, opt_state, state, losses
