"""A trained classifier's inference function as a serialized `jax.export.Exported`.

The file holds StableHLO, not Python: it is loaded and run with JAX alone, in another
process or on another machine, without this repository (`load`, or
`jax.export.deserialize` directly). The params are baked in as constants, so the file is
the whole model (the seed's is about 1.3 MB, the strong preset's about 6 MB): nothing
else to ship or to keep in step with it. Batch and time are symbolic ("b, t"): one file
serves every batch size and review length. A review longer than the `maxlen` it was
trained with keeps its last maxlen tokens inside the function, as `input_pipeline.encode`
does, so the model never runs past the lengths it was trained on.

    exported = jax.export.deserialize(open(path, "rb").read())
    probabilities = exported.call(tokens, lengths)   # int32 [b, t], int32 [b] -> float32 [b]

The vocabulary (word -> id) that the tokens must come from is written next to it,
PATH.vocab.json, when given.
"""

import json
import os
from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp

from examples.imdb import input_pipeline

VOCAB_SUFFIX = ".vocab.json"


def _last_tokens(tokens, lengths, maxlen, keep):
  """Each row's last `maxlen` valid tokens, right-padded with PAD: [batch, keep] and
  lengths [batch], keep = min(time, maxlen) (a symbolic dimension in an export)."""
  start = jnp.maximum(lengths - maxlen, 0)  # [B]
  steps = jnp.arange(keep, dtype=jnp.int32)  # [keep]
  index = jnp.minimum(start[:, None] + steps, tokens.shape[1] - 1)  # [B, keep]
  lengths = jnp.minimum(lengths, maxlen)
  kept = jnp.take_along_axis(tokens, index, axis=1)
  return jnp.where(steps < lengths[:, None], kept, jnp.int32(input_pipeline.PAD)), lengths


def inference_fn(net, params, maxlen, keep=None):
  """`probabilities(tokens, lengths)`: the classifier in inference mode, params closed over.

  tokens: int32 [batch, time], right-padded; ids outside the embedding's rows are read as
  the out-of-vocabulary id (JAX would otherwise clamp them to some other word's row);
  past `maxlen` only each row's last maxlen tokens are read, as in training.
  lengths: int32 [batch], clipped to [0, time]. Returns float32 [batch], P(positive).
  keep: min(time, maxlen), given when time is symbolic (where Python's min cannot decide).
  """
  vocab_size = params["embed"].shape[0]

  def probabilities(tokens, lengths):
    known = (tokens >= 0) & (tokens < vocab_size)
    tokens = jnp.where(known, tokens, jnp.int32(input_pipeline.OOV))
    lengths = jnp.clip(lengths, 0, tokens.shape[1])
    tokens, lengths = _last_tokens(tokens, lengths, maxlen,
                                   min(tokens.shape[1], maxlen) if keep is None else keep)
    return jax.nn.sigmoid(net.apply(params, tokens, lengths))  # [batch]

  return probabilities


def export_classifier(net, params, maxlen: int, path: Optional[str] = None, *,
                      vocab: Optional[Dict[str, int]] = None,
                      platforms: Optional[Sequence[str]] = None) -> jax.export.Exported:
  """Exports `net.apply` with `params` baked in, for any batch size and time length.

  Args:
    net: the `model.Classifier`.
    params: its params (host or device arrays), e.g. those the run selected for testing.
    maxlen: the trainer's --maxlen: longer reviews keep their last maxlen tokens.
    path: where to write the serialized function (atomically); None: only return it.
    vocab: word -> id, written to `path + ".vocab.json"` (atomically) when given.
    platforms: e.g. ("cpu", "cuda"); default: the platform this process runs on.

  Returns:
    The `jax.export.Exported`: `exported.call(tokens int32 [b, t], lengths int32 [b])`
    -> float32 [b].
  """
  if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
    raise ValueError(f"maxlen: expected a positive int, got {maxlen!r}")
  params = jax.tree.map(jnp.asarray, params)
  # parsed together, so that min(t, maxlen) is in the scope of t
  b, t, keep = jax.export.symbolic_shape(f"b, t, min(t, {maxlen})")
  specs = (jax.ShapeDtypeStruct((b, t), jnp.int32), jax.ShapeDtypeStruct((b,), jnp.int32))
  exported = jax.export.export(jax.jit(inference_fn(net, params, maxlen, keep)),
                               platforms=platforms)(*specs)
  if path is not None:
    _write_atomically(path, exported.serialize())
    if vocab is not None:
      _write_atomically(path + VOCAB_SUFFIX, json.dumps(vocab).encode())
  return exported


def load(path: str) -> jax.export.Exported:
  """The `Exported` written by `export_classifier` (any JAX of a compatible version)."""
  with open(path, "rb") as f:
    return jax.export.deserialize(bytearray(f.read()))


def load_vocab(path: str) -> Dict[str, int]:
  """The word -> id vocabulary written next to the export at `path`."""
  with open(path + VOCAB_SUFFIX) as f:
    return json.load(f)


def _write_atomically(path, data):
  # a temporary file in the same directory, then one rename: a reader, or a process
  # killed midway, sees the old file or the new one, never a torn one
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
