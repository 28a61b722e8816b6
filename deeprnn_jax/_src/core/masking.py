"""Masking past `lengths`, written once for every time loop and schedule.

Step t of row b is valid when t < lengths[b]. At an invalid step the row's carry stays
what it was and its output is zero, so the final carry is the carry at the last valid step
and a backward direction, scanning the padding first, starts at t = lengths[b] - 1.

Padding is never read: `zero_padding` replaces every input past `lengths` by zeros before
any time loop runs. Masking the step's results alone is not enough for the gradient: the
masked step is still computed from the padded input, `where` sends it a zero cotangent,
and 0 x NaN = NaN, so a NaN or inf in the padding would reach every parameter gradient.
"""

import jax
import jax.numpy as jnp


def mask_step(valid, new_carry, old_carry, y):
  """Keeps the old carry and zeroes y where `valid` [B] is False."""
  keep = lambda n, o: jnp.where(valid[:, None], n, o)
  return jax.tree.map(keep, new_carry, old_carry), jnp.where(valid[:, None], y, 0)


def valid_steps(time, lengths):
  """[T, B] bools: step t of row b is valid; None without lengths."""
  if lengths is None:
    return None
  return jnp.arange(time, dtype=lengths.dtype)[:, None] < lengths[None]


def zero_padding(xs, lengths):
  """xs [B, T, F] with every step t >= lengths[b] set to zero (xs itself without lengths).

  A `select`, not a product: the padded values reach neither the forward pass nor, through
  a zero cotangent times a NaN, the gradient."""
  if lengths is None:
    return xs
  valid = jnp.arange(xs.shape[1], dtype=lengths.dtype)[None, :] < lengths[:, None]  # [B, T]
  return jnp.where(valid[:, :, None], xs, jnp.zeros((), xs.dtype))


def restart(reset, initial, carry):
  """`carry` with the rows where `reset` [B] holds replaced by `initial`'s (segment
  resets: several sequences packed in one row)."""
  return jax.tree.map(lambda i, c: jnp.where(reset[:, None], i, c), initial, carry)


def reverse_valid(xs, lengths):
  """Each row's first lengths[b] steps in reverse order, its padding left in place:
  xs [T, B, ...] -> [T, B, ...]; its own inverse. A fused kernel without per-row
  lengths runs a backward direction as reverse_valid -> forward -> reverse_valid."""
  t = jnp.arange(xs.shape[0], dtype=lengths.dtype)[:, None]  # [T, 1]
  index = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # [T, B]
  index = index.reshape(index.shape + (1,) * (xs.ndim - 2))
  return jnp.take_along_axis(xs, index, axis=0)
