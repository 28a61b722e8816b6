"""Output selection like Keras' `return_sequences`: the sequence, its last valid step, or all.

`apply(..., output=)` takes one of
  "sequence": the top layer's outputs [batch, time, D*H] (Keras `return_sequences=True`);
  "last": the top layer's output at each sequence's last valid step [batch, D*H]
    (`return_sequences=False`, respecting `lengths`); for a bidirectional top layer the
    forward half is taken at t = lengths[b] - 1 and the backward half at t = 0, where each
    direction has read the whole sequence (PyTorch's h_n of both directions, Keras'
    `Bidirectional(return_sequences=False)`);
  "all": a tuple with every layer's output sequence, bottom first.
"""

import jax.numpy as jnp

OUTPUTS = ("sequence", "last", "all")


def check_output(output):
  if not isinstance(output, str) or output not in OUTPUTS:
    raise ValueError(f"output: expected one of {OUTPUTS}, got {output!r}")
  return output


def last_valid(ys, lengths=None, backward_width=0):
  """ys [B, T, D] at each sequence's last valid step -> [B, D].

  Args:
    ys: outputs [batch, time, features], zero past each sequence's length.
    lengths: optional int [B]; None means every sequence is T steps long.
    backward_width: how many trailing features come from a backward direction; they are
      taken at t = 0, where the backward direction ends.

  Returns:
    [batch, features]; a sequence of length 0 gives zeros.
  """
  B, T, D = ys.shape
  if lengths is None:
    last = ys[:, T - 1]
  else:
    # take_along_axis, not ys[arange(B), i]: its index keeps the batch's sharding
    index = jnp.maximum(lengths - 1, 0)[:, None, None]  # [B, 1, 1]; length 0 reads zeros
    last = jnp.take_along_axis(ys, index, axis=1)[:, 0]  # [B, D]
  if not backward_width:
    return last
  split = D - backward_width
  return jnp.concatenate([last[:, :split], ys[:, 0, split:]], axis=-1)
