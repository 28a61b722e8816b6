"""A stack's options, typed and frozen, and the features its strategies must support.

`stacked_rnn` checks its keyword arguments once and keeps them in an `Options`; the
runner, the time loops and the schedules read its fields. `features` names what a
stack uses beyond the plain path (its wrappers included, each by its name);
`check_supported` holds those against what a time loop or schedule declares it supports
(`supports`, a set of feature names, or `ANY` for the general paths) and raises the one
error a user sees for an unsupported combination.
"""

import dataclasses
from typing import Any, Mapping, Optional, Tuple

import jax.numpy as jnp

ANY = frozenset({"*"})  # `supports` of a strategy that runs every feature (scan, layer)


@dataclasses.dataclass(frozen=True)
class Options:
  """What `stacked_rnn` was asked for, checked (see its docstring for each).

  Attributes:
    dropout, variational, recurrent_dropout, bidirectional, residual, layer_norm: the
      feature options of `stacked_rnn`.
    unroll: time steps per iteration of the time scan.
    remat: rematerialise each layer's time scan for the backward pass.
    compute_dtype: None or a numpy floating dtype.
    schedule: the `Schedule`; time_loop: the `TimeLoop`.
    wrappers: the names and values of the layer wrappers in every layer (innermost
      first), e.g. (("recurrent_dropout", 0.25), ("bidirectional", True)).
  """

  dropout: float = 0.0
  variational: bool = False
  recurrent_dropout: float = 0.0
  bidirectional: bool = False
  residual: bool = False
  layer_norm: bool = False
  unroll: int = 1
  remat: bool = False
  compute_dtype: Optional[Any] = None
  schedule: Any = None
  time_loop: Any = None
  wrappers: Tuple[Tuple[str, Any], ...] = ()

  def features(self) -> Mapping[str, Any]:
    """{feature: value} of every feature in use: options away from their defaults,
    and each wrapper by its name."""
    used = dict(self.wrappers)
    for name in ("remat", "layer_norm", "variational"):
      if getattr(self, name):
        used[name] = getattr(self, name)
    if self.compute_dtype is not None and self.compute_dtype != jnp.dtype(jnp.float32):
      used["compute_dtype"] = self.compute_dtype
    return used


def default_of(feature):
  """The value a feature has when unused (for messages: expected name=default)."""
  return {"recurrent_dropout": 0.0, "dropout": 0.0, "zoneout": 0.0,
          "compute_dtype": None}.get(feature, False)


def check_supported(argname, strategy, options: Options):
  """Raises a ValueError naming the first feature of `options` that `strategy` (a
  TimeLoop or Schedule) does not declare in its `supports`."""
  if strategy.supports == ANY:
    return
  for feature, value in options.features().items():
    if feature not in strategy.supports:
      raise ValueError(f"{argname}: {strategy.name!r} does not support {feature}; "
                       f"expected {feature}={default_of(feature)!r}, got {feature}={value!r}")
