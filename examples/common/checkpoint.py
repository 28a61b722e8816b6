"""The trainers' checkpoints, through orbax-checkpoint: OUT/checkpoints/STEP/{state,meta}.

Each checkpoint is one step directory named by the global step, with two items: `state`,
the arrays (params, optimizer state, best params) saved by orbax's standard PyTree handler
straight from the jax.Arrays, so an array sharded over devices or processes is written by
the processes that hold it, never gathered on one host; and `meta`, the JSON-able run
state (position in the data, PRNG, running sums, history, configuration).

Atomic: orbax writes a step into STEP.orbax-checkpoint-tmp and renames it to STEP only once
every item is written, so a process killed at any moment leaves the previous checkpoints
readable; an unfinished temporary directory is never listed as a checkpoint, and the next
save removes it. The last KEEP checkpoints are kept (an older one to go back to should the
latest be damaged); the params of the best validation epoch are an array of every
checkpoint, so they are never lost with an old step.

Synchronous: `save` returns once the step is on disk. Asynchronous saving would overlap
the write with the next training steps, but it needs spare cores to do that in, and the
models this trainer runs on CPUs save in a small fraction of an epoch; so nothing has
been measured to gain from it, and a save that has returned is a save that survives.

orbax does not checksum the array data (a flipped bit in a chunk reads back silently), so
the metadata carries a fingerprint of every array, computed on the devices at save time
and checked after each restore: a damaged checkpoint is an error, never silently used.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging
import orbax.checkpoint as ocp

# orbax logs through absl; its warnings (e.g. about read-only managers) are not the user's
# concern, and its errors reach the user as CheckpointError anyway
absl_logging.set_verbosity(absl_logging.ERROR)

DIRNAME = "checkpoints"  # under --out, next to metrics.json
KEEP = 3  # the last KEEP checkpoints are kept
FORMAT = 2  # 1 was the single checkpoint.npz of earlier versions
OLD_FILENAME = "checkpoint.npz"


class CheckpointError(Exception):
  """A checkpoint is missing, unreadable or does not fit the model being trained."""


def path(out: str) -> str:
  """The directory holding the step directories of the run in `out` (absolute: orbax
  refuses relative paths, and `--out runs/x` is what users type)."""
  return os.path.join(os.path.abspath(out), DIRNAME)


def step_path(out: str, step: int) -> str:
  return os.path.join(path(out), str(step))


def _manager(out: str, read_only: bool = False) -> ocp.CheckpointManager:
  registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
  registry.add("state", ocp.args.StandardSave)
  registry.add("state", ocp.args.StandardRestore)
  meta = ocp.JsonCheckpointHandler()
  registry.add("meta", ocp.args.JsonSave, meta)
  registry.add("meta", ocp.args.JsonRestore, meta)
  options = ocp.CheckpointManagerOptions(
      max_to_keep=KEEP, read_only=read_only, create=not read_only,
      cleanup_tmp_directories=not read_only,  # what a killed save left
      enable_async_checkpointing=False)  # see the module's docstring
  return ocp.CheckpointManager(path(out), options=options, handler_registry=registry)


def steps(out: str) -> List[int]:
  """The steps of the checkpoints in `out`, oldest first ([] if none); CheckpointError if
  `out` holds a checkpoint of the old format, which would otherwise be silently ignored."""
  old = os.path.join(out, OLD_FILENAME)
  if os.path.isfile(old):
    raise CheckpointError(
        f"{old} is a checkpoint of an earlier version of this trainer, which this version "
        f"cannot read (it expected orbax checkpoints in {path(out)}); finish that run with "
        f"the earlier version, or delete {old} to start again in {out}")
  if not os.path.isdir(path(out)):
    return []
  with _manager(out, read_only=True) as m:
    return sorted(m.all_steps())


def latest(out: str) -> Optional[int]:
  """The step of the newest checkpoint in `out`, None if there is none."""
  return (steps(out) or [None])[-1]


def save(out: str, step: int, state: Any, meta: dict) -> None:
  """Writes the arrays of `state` and the JSON-able `meta` as the checkpoint of `step`;
  returns once it is on disk. The last KEEP checkpoints stay."""
  meta = {**meta, "format": FORMAT, "fingerprint": fingerprints(state)}
  with _manager(out) as m:
    m.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                         meta=ocp.args.JsonSave(meta)))


def _corrupt(out, step, error):
  """The error for a checkpoint that cannot be read, saying what to do about it."""
  older = [s for s in steps(out) if s < step]
  remedy = (f"delete {step_path(out, step)} to continue from the checkpoint before it "
            f"(step {older[-1]})" if older else f"delete {path(out)} to start again")
  return CheckpointError(f"the checkpoint {step_path(out, step)} is corrupt or not a "
                         f"checkpoint of this trainer ({error}); {remedy}, or restore a "
                         f"good copy")


def _summary(e: Exception) -> str:
  lines = str(e).strip().splitlines() or [""]  # tensorstore's messages run to pages
  return f"{type(e).__name__}: {lines[0][:300]}"


def _check_step(out, step):
  if step is None:
    raise CheckpointError(f"no checkpoint to resume from: {path(out)} holds none (run "
                          f"without --resume to start training in {out})")


def read_meta(out: str, step: Optional[int] = None) -> dict:
  """The metadata of the checkpoint of `step` in `out` (default: the latest), or
  CheckpointError naming what is wrong."""
  step = latest(out) if step is None else step
  _check_step(out, step)
  try:
    with _manager(out, read_only=True) as m:
      meta = m.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
      raise ValueError(f"expected metadata of format {FORMAT}")
  except Exception as e:  # noqa: BLE001 -- whatever orbax raises, the remedy is the same
    raise _corrupt(out, step, _summary(e)) from None
  return meta


def restore(out: str, like: Any, step: Optional[int] = None) -> Tuple[Any, dict]:
  """Reads the checkpoint of `step` in `out` (default: the latest) into the structure of
  `like`, e.g. freshly built state: (state, meta). Each array comes back with the sharding
  of its counterpart in `like`, and must match its shape and dtype."""
  step = latest(out) if step is None else step
  meta = read_meta(out, step)
  with _manager(out, read_only=True) as m:
    try:
      saved = m.item_metadata(step).state.tree
      saved = {a.name: (a.dtype, a.shape) for a in jax.tree.leaves(saved)}
    except Exception as e:  # noqa: BLE001
      raise _corrupt(out, step, _summary(e)) from None
    _check_fits(step_path(out, step), saved, like)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      state = m.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract))).state
    except Exception as e:  # noqa: BLE001
      raise _corrupt(out, step, _summary(e)) from None
  damaged = [k for k, v in fingerprints(state).items() if meta["fingerprint"].get(k) != v]
  if damaged:
    raise _corrupt(out, step, f"the data of {', '.join(damaged[:3])} differs from what was "
                              f"saved: a damaged file")
  return state, meta


def _names(tree) -> Dict[str, Any]:
  """Leaves by orbax's names for them ("opt_state.1.0.mu.embed")."""
  def name(key):
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)

  return {".".join(map(name, p)): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _describe(dtype, shape):
  return f"{np.dtype(dtype).name}{list(shape)}"


def _check_fits(where, saved, like):
  """CheckpointError unless the arrays in `saved` (name -> (dtype, shape)) are those of
  `like`: orbax would otherwise cast dtypes silently, and fail on shapes with pages."""
  wanted = {k: (np.dtype(x.dtype), tuple(x.shape)) for k, x in _names(like).items()}
  if saved.keys() != wanted.keys():
    there, here = sorted(saved.keys() - wanted.keys()), sorted(wanted.keys() - saved.keys())
    detail = (f"it holds {len(saved)} arrays, the model being built has {len(wanted)}"
              + (f"; only there: {', '.join(there[:3])}" if there else "")
              + (f"; only here: {', '.join(here[:3])}" if here else ""))
  else:
    wrong = [k for k in sorted(saved) if (np.dtype(saved[k][0]), tuple(saved[k][1])) != wanted[k]]
    if not wrong:
      return
    k = wrong[0]
    detail = (f"array {k} is {_describe(*saved[k])} there and {_describe(*wanted[k])} here"
              + (f" ({len(wrong) - 1} more differ)" if len(wrong) > 1 else ""))
  raise CheckpointError(f"the checkpoint {where} does not fit the model being built: "
                        f"{detail}. It was written for a different model configuration: "
                        f"continue it with that configuration, or use another --out")


def _fingerprint(x):
  """A 32-bit fingerprint of an array's bits that any single flipped bit changes: the sum
  of its words, each times an odd weight (its position), modulo 2**32."""
  words = x.reshape(-1)
  if words.dtype == jnp.bool_:
    words = words.astype(jnp.uint32)
  elif words.dtype.itemsize in (1, 2, 4):
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[words.dtype.itemsize]
    words = jax.lax.bitcast_convert_type(words, unsigned).astype(jnp.uint32)
  else:  # 8-byte words (with jax_enable_x64): two 32-bit halves each
    words = jax.lax.bitcast_convert_type(words, jnp.uint32).reshape(-1)
  weights = 2 * jnp.arange(words.size, dtype=jnp.uint32) + 1
  return jnp.sum(words * weights, dtype=jnp.uint32)


@jax.jit
def _fingerprints(tree):
  return jax.tree.map(_fingerprint, tree)


def fingerprints(tree) -> Dict[str, int]:
  """The fingerprint of every array of `tree`, by name: computed where the arrays are, so
  that no array is gathered; each result is a replicated scalar."""
  return {k: int(np.asarray(v.addressable_data(0)))
          for k, v in _names(_fingerprints(tree)).items()}
