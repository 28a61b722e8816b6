"""Masking past `lengths`, written once for every time loop and schedule.

Step t of row b is valid when t < lengths[b]. At an invalid step the row's carry stays
what it was and its output is zero, so the final carry is the carry at the last valid step
and a backward direction, scanning the padding first, starts at t = lengths[b] - 1.
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
