"""The parameter layout of a stack: equal layers grouped, their params stacked.

Consecutive layers with the same (input width, layer) shape form a group whose params are
stacked on a leading axis, so that a depth scan (or a wavefront) runs the group with one
compiled layer body. `params` is a tuple with one dict per group, each leaf shaped
[layers_in_group, ...]. Everything that needs one layer's params, or the params of a
list of layers, goes through this module: `init`, `apply`, `step`, the weight converters,
TBPTT and the diagnostics.
"""

from typing import Tuple

import jax
import jax.numpy as jnp

Groups = Tuple[Tuple[int, int], ...]  # (first layer, number of layers) per group


def group_shapes(shapes) -> Groups:
  """Groups consecutive equal entries of `shapes` (one per layer): ((first, count), ...)."""
  groups = []
  for l, shape in enumerate(shapes):
    if groups and shape == shapes[groups[-1][0]]:
      groups[-1][1] += 1
    else:
      groups.append([l, 1])
  return tuple((first, count) for first, count in groups)


def stack(per_layer, groups: Groups):
  """Per-layer param dicts -> the grouped params tuple."""
  return tuple(jax.tree.map(lambda *a: jnp.stack(a), *per_layer[first:first + count])
               for first, count in groups)


def layer_params(groups: Groups, params, layer: int):
  """Layer `layer`'s params, taken out of its group's stacked arrays."""
  for g, (first, count) in enumerate(groups):
    if first <= layer < first + count:
      return jax.tree.map(lambda a: a[layer - first], params[g])
  num_layers = sum(count for _, count in groups)
  raise IndexError(f"layer: expected 0 <= layer < {num_layers}, got {layer}")


def unstack(groups: Groups, params):
  """The grouped params tuple -> a list of per-layer param dicts."""
  return [layer_params(groups, params, l) for first, count in groups
          for l in range(first, first + count)]


def stack_carries(carries):
  """Per-layer carries -> one carry with a leading layer axis."""
  return jax.tree.map(lambda *a: jnp.stack(a), *carries)


def unstack_carries(stacked, count):
  """A carry with a leading layer axis of `count` -> a list of per-layer carries."""
  return [jax.tree.map(lambda a: a[i], stacked) for i in range(count)]


def chunk_time(a, n_chunks: int, chunk_size: int, axis: int = 0):
  """`a` with its time axis `axis` zero-padded to n_chunks * chunk_size and split there
  into [..., n_chunks, chunk_size, ...]; None stays None (TBPTT's chunks, the pipeline's)."""
  if a is None:
    return None
  widths = [(0, 0)] * a.ndim
  widths[axis] = (0, n_chunks * chunk_size - a.shape[axis])
  a = jnp.pad(a, widths)
  return a.reshape(a.shape[:axis] + (n_chunks, chunk_size) + a.shape[axis + 1:])
