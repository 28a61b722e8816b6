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


def per_device(loop):
  """`loop` (a time loop: `loop(cell, params, xs, carry, lengths, *, reverse, resets)`,
  xs [T, B, F]) run by each device on its own rows when B is split over Explicit mesh
  axes; otherwise `loop` itself.

  Left to XLA's partitioner, a scan over batch-split rows that reads replicated weights
  gets their gradient made replicated at every step: autodiff accumulates the weight
  gradients in the backward loop's carry, so each step of it all-reduces them across
  devices (GRU 1 x 64, [128, 400, 64], on 2 CPU devices: 1.7x slower than on one).
  Under `jax.shard_map` each device runs the whole loop on its rows and the weight
  gradients are summed once, after the loop. Same numbers, the sums' order aside; with a
  bf16 compute dtype each device's partial weight gradient is rounded to bf16 before the
  sum, which leaves it as far from the float32 gradient as one device's, not equal to it
  (tests/test_sharding.py).

  Everything batch-shaped must come in as an argument, split as the rows: xs, the carry,
  lengths [B], resets [T, B], and any params leaf split over the same axes on its first
  dimension (a per-sequence weight or mask, as recurrent dropout makes). Params split any
  other way (unsharded FSDP weights) leave the loop to the partitioner.
  """

  def run(cell, params, xs, carry, lengths=None, *, reverse=False, resets=None):
    axes = batch_axes(xs, 1)
    param_specs = None if axes is None else _param_specs(params, axes)
    if param_specs is None:
      return loop(cell, params, xs, carry, lengths, reverse=reverse, resets=resets)
    carry = follow_batch(carry, axes, 0)
    args = {"params": params, "xs": xs, "carry": carry, "lengths": lengths, "resets": resets}
    args = {k: v for k, v in args.items() if v is not None}
    specs = {"params": param_specs, "xs": P(None, axes), "lengths": P(axes),
             "carry": jax.tree.map(lambda _: P(axes), carry), "resets": P(None, axes)}

    names = tuple(axes) if isinstance(axes, tuple) else (axes,)

    def local(a):
      # the weights made per-device here, once: left to the steps, each step's use would
      # be cast, and the transpose of each cast is a sum over devices inside the loop
      params = jax.tree.map(lambda w, spec: jax.lax.pcast(w, names, to="varying")
                            if spec == P() else w, a["params"], param_specs)
      return loop(cell, params, a["xs"], a["carry"], a.get("lengths"),
                  reverse=reverse, resets=a.get("resets"))

    return jax.shard_map(local, in_specs=({k: specs[k] for k in args},),
                         out_specs=(specs["carry"], P(None, axes)), axis_names=set(names))(args)

  return run


def _param_specs(params, axes):
  """Per-leaf specs for `per_device`: P(axes) for leaves split as the batch on their first
  dimension, P() for unsharded ones; None if any leaf is split otherwise."""
  leaves, tree = jax.tree.flatten(params)
  specs = []
  for a in leaves:
    if batch_axes(a, 0) == axes and _only_batch_sharded(a, 0):
      specs.append(P(axes))
    elif not _any_sharded(a):
      specs.append(P())
    else:
      return None
  return jax.tree.unflatten(tree, specs)


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
