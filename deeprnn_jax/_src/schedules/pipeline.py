"""A pipeline across depth: a group's layers split over the devices of a mesh axis.

GNMT (Wu et al. 2016) put each LSTM layer of its stacks on a GPU of its own, layer l + 1
starting on the first time steps while layer l still works on later ones. Here a group
of n equal layers is split over the S devices ("stages") of one mesh axis, n / S
consecutive layers each, and time is cut into chunks of C steps, which play the part of
a pipeline's microbatches. At tick k stage s runs its layers over chunk k - s and passes
that chunk's output to stage s + 1 with `lax.ppermute` inside `jax.shard_map`; a stage's
carries go from one chunk to the next, as they go from one step to the next. The forward
pass takes T/C + S - 1 ticks, of which each stage idles S - 1 ((S - 1) / (T/C + S - 1)
of its time: `idle_fraction`); reverse-mode differentiation turns it into the reverse
wavefront, the permutes pointing backwards. The numbers are those of the layer schedule:
each layer still steps through time in order, from the same carries.

Every stage computes at every tick (SPMD), its results masked outside its chunks; the
layers' parameters and carries live on their stage (split on the group's layer axis),
the input and the lengths are replicated over the axis, and the top layer's output comes
back from the last stage. Layers of other widths (a first layer reading the input's
width, say) run outside the pipeline, on every device.
"""

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.core import layout
from deeprnn_jax._src.core.types import Schedule


def idle_fraction(time: int, chunk_size: int, stages: int) -> float:
  """The fraction of a stage's ticks spent idle: (S - 1) / (T/C + S - 1)."""
  n_chunks = -(-time // chunk_size)
  return (stages - 1) / (n_chunks + stages - 1)


def pipeline(axis: str = "stage", chunk_size: int = 16, mesh=None) -> Schedule:
  """A schedule that pipelines each group of equal layers over the mesh axis `axis`.

  Args:
    axis: the mesh axis whose S devices are the stages; S must divide the number of
      layers of every group of two or more equal layers.
    chunk_size: C, time steps per chunk (per microbatch); smaller chunks idle less
      ((S - 1) / (T/C + S - 1)) but pay a permute per chunk.
    mesh: the mesh; by default the one set with `jax.set_mesh`.

  Returns:
    A `Schedule` for `stacked_rnn(..., schedule=...)`. Not for bidirectional stacks (a
    backward direction needs the whole sequence), nor for training with dropout (masks
    are drawn per call, and a call here is a chunk), nor with segment `resets`.
  """
  if not isinstance(axis, str) or not axis:
    raise ValueError(f"axis: expected the name of a mesh axis, got {axis!r}")
  checks.check_positive_int(chunk_size, "chunk_size")

  def run_group(layer, params, h, carries, ctx, keys, indices, keep_all):
    if keys is not None:
      raise ValueError("train: the pipeline schedule runs without dropout (its masks are "
                       "drawn per call, and a call here is one chunk); expected train=False "
                       "or a model without dropout, got a dropout key")
    if ctx.resets is not None:  # a reset restarts from the carry a time loop starts from,
      # which for a chunk is not the sequence's
      raise ValueError("resets: the pipeline schedule does not take segment resets; "
                       "expected resets=None, or the 'layer' or 'wavefront' schedule")
    return _run(layer, params, h, carries, ctx, indices, keep_all, axis, chunk_size,
                mesh or jax.sharding.get_abstract_mesh())

  # causal layers only: it cuts time into chunks, and a backward direction needs all of it
  return Schedule("pipeline", run_group, SUPPORTS)


SUPPORTS = frozenset({"dropout", "variational", "recurrent_dropout", "residual", "layer_norm",
                      "compute_dtype", "remat"})
PIPELINE = pipeline()  # schedule="pipeline": the mesh axis "stage", chunks of 16 steps


def _stages(mesh, axis, n):
  if axis not in getattr(mesh, "axis_names", ()):
    raise ValueError(f"schedule: the pipeline's axis {axis!r} is not an axis of the mesh "
                     f"({mesh}); build one with it and pass it, or set it with jax.set_mesh")
  stages = mesh.shape[axis]
  if n % stages:
    raise ValueError(f"schedule: a pipeline over the {stages} stages of axis {axis!r} needs "
                     f"groups of equal layers that {stages} divides, got a group of {n}")
  return stages


def _run(layer, params, h, carries, ctx, indices, keep_all, axis, chunk_size, mesh):
  n, (T, B, _) = indices.shape[0], h.shape
  stages = _stages(mesh, axis, n)
  n_chunks = -(-T // chunk_size)
  lengths = ctx.lengths
  if lengths is None and n_chunks * chunk_size != T:  # the padding must not be stepped
    lengths = jnp.full((B,), T, jnp.int32)
  starts = jnp.arange(n_chunks, dtype=jnp.int32)[:, None] * chunk_size  # [n, 1]
  lens = None if lengths is None else jnp.clip(lengths[None] - starts, 0, chunk_size)
  xs = layout.chunk_time(h, n_chunks, chunk_size)  # [n, C, B, F]
  stage = _stage_fn(layer, ctx, n_chunks, stages, axis, keep_all)
  specs = (P(axis), P(axis), P(axis), P(), P())
  args = _placed((params, carries, indices, xs, lens), specs, mesh, axis)
  out_specs = (P(), P(axis) if keep_all else P(), P(axis))
  top, outs, finals = jax.shard_map(stage, mesh=mesh, in_specs=specs, out_specs=out_specs,
                                    axis_names={axis}, check_vma=False)(*args)
  # the stack unstacks carries layer by layer: on an Explicit axis, from whole arrays
  finals, outs = _placed((finals, outs), (P(), P()), mesh, axis)
  untime = lambda a: a.reshape(a.shape[:-4] + (n_chunks * chunk_size,) + a.shape[-2:])
  return untime(top)[:T], finals, (untime(outs)[:, :T] if keep_all else None)


def _placed(args, specs, mesh, axis):
  """On an Explicit axis, the arguments resharded to `specs` (types carry shardings
  there, and shard_map's must match); on an Auto axis XLA places them itself."""
  if mesh.axis_types[mesh.axis_names.index(axis)] != jax.sharding.AxisType.Explicit:
    return args
  if isinstance(mesh, jax.sharding.Mesh):  # given, perhaps not set: name it
    specs = [jax.sharding.NamedSharding(mesh, spec) for spec in specs]
  return tuple(None if a is None else jax.tree.map(
      lambda x, spec=spec: jax.sharding.reshard(x, spec), a)
      for a, spec in zip(args, specs))


def _stage_fn(layer, ctx, n_chunks, stages, axis, keep_all):
  """One stage's program: its layers over every chunk, tick by tick."""
  forward = [(i, i + 1) for i in range(stages - 1)]

  def run_chunk(params, carries, indices, x, lens):
    def body(x, inp):
      p, carry, index = inp
      y, carry = layer.run(p, x, carry, ctx._replace(lengths=lens, key=None, index=index))
      return y, (carry, y)
    y, (carries, ys) = lax.scan(body, x, (params, carries, indices))
    return y, carries, ys  # ys [m, C, B, W]: each local layer's output

  def stage(params, carries, indices, xs, lens):
    s = lax.axis_index(axis)
    take = lambda a, i: None if a is None else a[i]
    keep = indices.shape[0] if keep_all else 1  # local layers whose outputs come back

    def tick(state, k):
      carries, inbox, outs = state
      c = jnp.clip(k - s, 0, n_chunks - 1)  # the chunk this stage works on
      active = (k - s >= 0) & (k - s < n_chunks)
      x = jnp.where(s == 0, xs[c], inbox)  # stage 0 reads the input, the others stage s-1
      y, new, ys = run_chunk(params, carries, indices, x, take(lens, c))
      carries = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, carries)
      outs = outs.at[:, c].set(jnp.where(active, ys[-keep:], outs[:, c]))
      inbox = lax.ppermute(y.astype(x.dtype), axis, forward)
      return (carries, inbox, outs), None

    y_like = jax.eval_shape(lambda: run_chunk(params, carries, indices, xs[0],
                                              take(lens, 0))[2])
    outs = jnp.zeros((keep, n_chunks) + y_like.shape[1:], y_like.dtype)  # [keep, n, C, B, W]
    state = (carries, jnp.zeros_like(xs[0]), outs)
    (carries, _, outs), _ = lax.scan(tick, state, jnp.arange(n_chunks + stages - 1))
    # the top layer's output, from the last stage to every device: [n_chunks, C, B, W]
    top = lax.psum(jnp.where(s == stages - 1, outs[-1], jnp.zeros_like(outs[-1])), axis)
    return top, (outs if keep_all else jnp.zeros((), outs.dtype)), carries

  return stage
