"""Carries that follow the input's batch sharding, on meshes with Explicit axes.

Under `jax.jit` with a mesh whose axes are Explicit (the default of `jax.make_mesh`
since JAX 0.9), an array's type carries its sharding, and `lax.scan` insists that a
carry's type is the same before and after a step. A step's output takes the batch
sharding of its input (`x_t @ w` keeps `x_t`'s batch axis), so zeros built with
`jnp.zeros` (replicated) or a replicated state the user passes would fail the scan's
type check. Every carry a time loop starts from goes through `follow_batch` first.
On Auto axes, a single device or without a mesh, types carry no sharding and these
functions return their argument unchanged: XLA's propagation places the carries.
"""

import jax
from jax.sharding import PartitionSpec as P


def batch_axes(x, axis: int):
  """The Explicit mesh axes that `x`'s dimension `axis` is sharded over, or None."""
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", None)
  if spec is None or axis >= len(spec):
    return None
  return spec[axis]


def follow_batch(tree, axes, batch_axis: int):
  """Reshards every leaf of `tree` so that its `batch_axis` is split over `axes` (as
  returned by `batch_axes`) and its other dimensions are replicated; with `axes` None,
  or for leaves already sharded so, returns them unchanged."""
  def one(a):
    if batch_axes(a, batch_axis) == axes and _only_batch_sharded(a, batch_axis):
      return a
    spec = [None] * a.ndim
    spec[batch_axis] = axes
    return jax.sharding.reshard(a, P(*spec))
  if axes is None and not _any_sharded(tree):
    return tree
  return jax.tree.map(one, tree)


def gather(params):
  """Parameters sharded over Explicit mesh axes (FSDP-style, to spread a wide stack's
  memory), all-gathered for use: a step's `x_t @ w` needs the whole of `w`. The gradient
  of this all-gather is a reduce-scatter, so the gradients come back sharded as the
  parameters are. Unsharded parameters pass through unchanged."""
  if not _any_sharded(params):
    return params
  return jax.tree.map(lambda a: jax.sharding.reshard(a, P(*[None] * a.ndim)), params)


def _only_batch_sharded(a, batch_axis):
  spec = getattr(getattr(jax.typeof(a), "sharding", None), "spec", ())
  return all(s is None for i, s in enumerate(spec) if i != batch_axis)


def _any_sharded(tree):
  """Whether a leaf's type names a mesh axis (a sharded state with a replicated input)."""
  for a in jax.tree.leaves(tree):
    spec = getattr(getattr(jax.typeof(a), "sharding", None), "spec", ())
    if any(s is not None for s in spec):
      return True
  return False
