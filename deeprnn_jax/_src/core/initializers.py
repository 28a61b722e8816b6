"""Initialiser choices, all from `jax.nn.initializers`, selectable by name or callable."""

from typing import Callable, Union

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

Initializer = Callable[..., jax.Array]

_BY_NAME = {
    "glorot_uniform": jinit.glorot_uniform(),  # Glorot & Bengio 2010 ("xavier")
    "xavier_uniform": jinit.glorot_uniform(),
    "glorot_normal": jinit.glorot_normal(),
    "xavier_normal": jinit.glorot_normal(),
    "he_uniform": jinit.he_uniform(),  # He et al. 2015, for ReLU
    "kaiming_uniform": jinit.he_uniform(),
    "he_normal": jinit.he_normal(),
    "kaiming_normal": jinit.he_normal(),
    "lecun_normal": jinit.lecun_normal(),
    "lecun_uniform": jinit.lecun_uniform(),
    "orthogonal": jinit.orthogonal(),  # Saxe et al. 2014
    "zeros": jinit.zeros,
    "ones": jinit.ones,
}

NAMES = tuple(sorted(_BY_NAME))


def resolve(init: Union[str, Initializer, None], default: str, argname: str) -> Initializer:
  """Returns the initialiser named by `init` (a name, a callable, or None for `default`)."""
  if init is None:
    init = default
  if callable(init):
    return init
  if isinstance(init, str) and init in _BY_NAME:
    return _BY_NAME[init]
  raise ValueError(f"{argname}: expected one of {NAMES} or a callable "
                   f"(key, shape, dtype) -> array, got {init!r}")


def per_gate(init: Initializer, key, shape, gates: int, dtype=jnp.float32):
  """Initialises a [rows, gates * H] kernel one [rows, H] block per gate.

  Per-gate blocks keep an orthogonal recurrent kernel orthogonal within each gate,
  as Flax and Haiku do, instead of one orthogonal [H, 4H] matrix as Keras does.
  """
  rows, cols = shape
  h = cols // gates
  keys = jax.random.split(key, gates)
  return jnp.concatenate([init(k, (rows, h), dtype) for k in keys], axis=1)
