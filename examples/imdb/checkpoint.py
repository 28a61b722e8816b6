"""Atomic checkpoints: one .npz of array leaves plus JSON metadata, replaced in one step.

`save` writes a temporary file next to the target, flushes it to disk and renames it over
the old checkpoint with `os.replace`, which is atomic on POSIX: a process killed at any
moment leaves either the previous checkpoint or the new one, never a torn file. The
.npz (a zip) carries a CRC per array, so a damaged file is detected on reading.
"""

import io
import json
import os
from typing import Any, Tuple

import jax
import numpy as np

import faults

FILENAME = "checkpoint.npz"
FORMAT = 1


class CheckpointError(Exception):
  """A checkpoint is missing, unreadable or does not fit the model being trained."""


def path(directory: str) -> str:
  return os.path.join(directory, FILENAME)


def exists(directory: str) -> bool:
  return os.path.isfile(path(directory))


def save(directory: str, tree: Any, meta: dict) -> None:
  """Writes the arrays of `tree` and the JSON-able `meta` to DIRECTORY/checkpoint.npz."""
  os.makedirs(directory, exist_ok=True)
  leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]
  arrays = {f"leaf_{i:05d}": x for i, x in enumerate(leaves)}
  meta = {**meta, "format": FORMAT, "num_leaves": len(leaves)}
  arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  target = path(directory)
  tmp = os.path.join(directory, f".{FILENAME}.tmp-{os.getpid()}")
  # serialised in memory first, so that the test hook below can cut the write in two
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  data = buffer.getbuffer()
  with open(tmp, "wb") as f:
    f.write(data[:len(data) // 2])
    faults.in_save(f)  # a test hook: a SIGKILL here leaves a torn temporary file
    f.write(data[len(data) // 2:])
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, target)
  dir_fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(dir_fd)  # make the rename itself durable
  finally:
    os.close(dir_fd)


def read_meta(directory: str) -> dict:
  """The metadata of DIRECTORY's checkpoint, or CheckpointError naming what is wrong."""
  return _load(directory)[1]


def _load(directory):
  target = path(directory)
  if not os.path.isfile(target):
    raise CheckpointError(f"no checkpoint to resume from: {target} does not exist "
                          f"(run without --resume to start training in this directory)")
  try:
    with np.load(target) as f:
      data = {k: f[k] for k in f.files}  # reading every member checks its CRC
    meta = json.loads(bytes(data.pop("meta")).decode())
    if meta.get("format") != FORMAT or meta.get("num_leaves") != len(data):
      raise ValueError("unexpected format or number of arrays")
  except Exception as e:
    raise CheckpointError(f"the checkpoint {target} is corrupt or not a checkpoint of this "
                          f"trainer ({type(e).__name__}: {e}); delete it to start again, "
                          f"or restore a good copy") from None
  return [data[f"leaf_{i:05d}"] for i in range(len(data))], meta


def restore(directory: str, like: Any) -> Tuple[Any, dict]:
  """Reads DIRECTORY's checkpoint into the structure of `like` (e.g. freshly initialised
  state): (tree, meta). Every array must match its counterpart's shape and dtype."""
  leaves, meta = _load(directory)
  like_leaves, treedef = jax.tree.flatten(like)
  if len(leaves) != len(like_leaves):
    raise CheckpointError(f"the checkpoint {path(directory)} holds {len(leaves)} arrays, "
                          f"the model being built has {len(like_leaves)}: it was written "
                          f"for a different model configuration")
  for i, (a, b) in enumerate(zip(leaves, like_leaves)):
    if a.shape != b.shape or a.dtype != b.dtype:
      raise CheckpointError(f"the checkpoint {path(directory)} does not fit the model being "
                            f"built: array {i} is {a.dtype}{list(a.shape)} there and "
                            f"{b.dtype}{list(b.shape)} here (a different model configuration)")
  return jax.tree.unflatten(treedef, leaves), meta
