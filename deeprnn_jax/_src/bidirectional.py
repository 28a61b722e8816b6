"""Bidirectional layers: the carries of both directions and their validation.

A bidirectional layer runs a forward cell from t = 0 and a backward cell from each
sequence's last valid step down to t = 0 (`scan_layer(..., reverse=True)` with `lengths`:
the padding, scanned first, leaves the carry untouched, so the backward direction starts
exactly at t = lengths[b] - 1, the per-sequence reversal of PyTorch's packed sequences and
Flax's `seq_lengths`). Its output is [forward | backward] along the features, and its
carry the pair (forward carry, backward carry).
"""

from deeprnn_jax._src import checks
from deeprnn_jax._src.base import LSTMState

DIRECTIONS = ("fwd", "bwd")


def initial_carries(cell, batch_size, dtype):
  """Zeros for both directions: (forward carry, backward carry)."""
  return (cell.initial_carry(batch_size, dtype), cell.initial_carry(batch_size, dtype))


def check_state(state, cells, batch):
  """Returns a bidirectional stack's `initial_state` as a tuple of pairs, or raises."""
  if not isinstance(state, (tuple, list)) or isinstance(state, LSTMState):
    raise TypeError(f"initial_state: expected a tuple with one (forward, backward) pair of "
                    f"carries per layer ({len(cells)} layers), got {type(state).__name__}")
  if len(state) != len(cells):
    raise ValueError(f"initial_state: expected {len(cells)} entries (one per layer), "
                     f"got {len(state)}")
  out = []
  for l, (pair, cell) in enumerate(zip(state, cells)):
    if not isinstance(pair, (tuple, list)) or isinstance(pair, LSTMState) or len(pair) != 2:
      raise TypeError(f"initial_state[{l}]: expected a pair (forward carry, backward carry) "
                      f"for a bidirectional layer, got {type(pair).__name__}")
    carries = []
    for d, carry in enumerate(pair):
      try:
        (carry,) = checks.check_initial_state((carry,), (cell,), batch)
      except (TypeError, ValueError) as e:
        raise type(e)(str(e).replace("initial_state[0]", f"initial_state[{l}][{d}]")) from None
      carries.append(carry)
    out.append(tuple(carries))
  return tuple(out)
