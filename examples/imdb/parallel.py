"""Where the trainer's arrays live: one device, a data-parallel mesh, or many processes.

    python -m examples.imdb.main --mesh data=4          # every batch split over 4 devices
    python -m examples.imdb.main --coordinator 10.0.0.1:1234 --num-processes 2 \\
        --process-id 0 --out /shared/runs/mp               # and --process-id 1 elsewhere

`--mesh data=N` puts N devices on a 1-D mesh with the axis "data" (Explicit, JAX's
default): every global batch of `--batch-size` rows is split over them, the parameters and
optimizer state are replicated, and XLA all-reduces the gradients. On a CPU the N devices
are virtual (`jax_num_cpu_devices`), one per core at most being useful.

With `--coordinator`, the processes join through `jax.distributed.initialize` (JAX's own
runtime; CPU processes talk through gloo): each process builds only its own rows of every
global batch and `jax.make_array_from_process_local_data` assembles the global array, so
the model sees the same batches as on one device. `--coordinator auto` lets JAX detect
the cluster (SLURM, Kubernetes, Cloud TPU...) instead of the two flags. Checkpoints go
through orbax, which writes each array from the processes that hold it; restoring builds
the arrays for the mesh of the run that restores, so a run continues on another number of
devices. Only process 0 prints, writes metrics.json and exports.
"""

import argparse
import os
from typing import Optional

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


class ParallelError(ValueError):
  """--mesh and --batch-size (or the devices at hand) do not fit together."""


def mesh_flag(text):
  """--mesh data=N (N devices) or data=auto (every device that splits both batches)."""
  name, _, size = text.partition("=")
  if name == "data" and size == "auto":
    return "auto"
  if name != "data" or not size.isdigit() or int(size) < 1:
    raise argparse.ArgumentTypeError(f"expected data=N with N a positive number of "
                                     f"devices, or data=auto, got {text!r}")
  return int(size)


def initialize(cfg) -> None:
  """Joins the processes of a multi-process run and sizes the CPU backend; before any
  other use of JAX, since both must be set before its backends start."""
  if not cfg["coordinator"]:
    n = usable_cores() if cfg["mesh"] == "auto" else cfg["mesh"]
    if n > 1:  # only the CPU backend reads it: harmless where devices are GPUs
      jax.config.update("jax_num_cpu_devices", n)
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU cross-process
  if cfg["coordinator"] == "auto":
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(cfg["coordinator"], cfg["num_processes"], cfg["process_id"])


class Placement:
  """Places the trainer's arrays: `mesh` None means the default device, as without flags."""

  def __init__(self, mesh: Optional[jax.sharding.Mesh]):
    self.mesh = mesh
    if mesh is not None:
      self.rows = NamedSharding(mesh, P("data"))  # batch arrays: split by rows
      self.replicated = NamedSharding(mesh, P())

  @property
  def is_main(self) -> bool:
    """Whether this is process 0, which prints, writes metrics.json and exports."""
    return jax.process_index() == 0

  def state(self, tree):
    """Params and optimizer state (host or device arrays, equal in every process),
    replicated over the mesh."""
    if self.mesh is None:
      return tree
    return jax.tree.map(lambda a: _global(np.asarray(a), self.replicated), tree)

  def batch(self, batch: dict) -> dict:
    """A global batch (host arrays) as arrays split over the mesh by rows; each process
    contributes only its own rows."""
    if self.mesh is None:
      return batch
    mine = _local_rows(self.rows, len(batch["labels"]))
    return {k: jax.make_array_from_process_local_data(self.rows, v[mine], v.shape)
            for k, v in batch.items()}

  def like(self, shape, dtype, batched=True):
    """The abstract array the compiled steps take for a batch or replicated input."""
    if self.mesh is None:
      return jax.ShapeDtypeStruct(shape, dtype)
    return jax.ShapeDtypeStruct(shape, dtype,
                                sharding=self.rows if batched else self.replicated)

  def key_data(self, data):
    """A PRNG key's raw data (host array) as the steps take it: replicated."""
    return data if self.mesh is None else _global(data, self.replicated)

  def host(self, tree):
    """Replicated arrays (metrics, params) as host arrays, in every process: each reads
    its own copy, so nothing crosses processes."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


ONE_DEVICE = Placement(None)  # the default device, as without --mesh or --coordinator


def _global(value: np.ndarray, sharding):
  """`value` (the same in every process) as a global array with `sharding`."""
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _local_rows(sharding, n: int) -> slice:
  """The rows of an [n, ...] batch that this process's devices hold (one contiguous run:
  jax.make_mesh orders devices process by process)."""
  spans = sorted({(s.start or 0, n if s.stop is None else s.stop)
                  for s, *_ in sharding.addressable_devices_indices_map((n,)).values()})
  start, stop = spans[0][0], spans[-1][1]
  if sum(b - a for a, b in spans) != stop - start:
    raise ParallelError(f"this process's devices hold rows {spans} of the batch, not one "
                        f"contiguous run; build the mesh with jax.make_mesh")
  return slice(start, stop)


def usable_cores() -> int:
  """The CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS and Windows have no affinity mask
    return os.cpu_count() or 1


def auto_devices(cfg) -> int:
  """--mesh data=auto: the most devices (at most all of them) that split both batch sizes
  evenly. On a CPU the devices are one virtual device per core: each runs its rows' time
  loops on a core of its own (docs/performance/lab-notes.md v16: the strong preset's step 1.4x
  faster on 2 cores)."""
  return max(d for d in range(1, jax.device_count() + 1)
             if cfg["batch_size"] % d == 0 and cfg["eval_batch_size"] % d == 0)


def placement(cfg) -> Placement:
  """The Placement of --mesh data=N (N > 1) or data=auto, or of every device of a
  multi-process run; ParallelError when the batch sizes do not split evenly."""
  if cfg["mesh"] == "auto":  # a multi-process run takes every device anyway
    n = auto_devices(cfg) if jax.process_count() == 1 else 0
  else:
    n = cfg["mesh"]
  n = n or (jax.device_count() if jax.process_count() > 1 else 1)
  if n == 1:
    return ONE_DEVICE
  if n > jax.device_count() or (jax.process_count() > 1 and n != jax.device_count()):
    raise ParallelError(
        f"--mesh: expected data=N with N <= the {jax.device_count()} devices at hand "
        f"(every device of a multi-process run), got data={n}")
  for flag in ("batch_size", "eval_batch_size"):
    if cfg[flag] % n:
      raise ParallelError(f"--{flag.replace('_', '-')}: expected a multiple of the {n} "
                          f"devices of --mesh data={n}, got {cfg[flag]}")
  return Placement(jax.make_mesh((n,), ("data",), devices=jax.devices()[:n]))
