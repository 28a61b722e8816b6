"""The registry of time loops and schedules, by name, loaded on first use.

`stacked_rnn(time_loop=, schedule=)` and `compose` take a name or the object itself; a
name is looked up here and its module imported only then (the cuDNN loop imports
`jax.experimental.rnn`). A new backend or schedule is a module and a line here.
"""

import importlib

from deeprnn_jax._src.core.types import Schedule, TimeLoop

_PREFIX = "deeprnn_jax._src."
ENTRIES = {
    TimeLoop: {
        "scan": "loops.scan:SCAN",
        "cudnn": "loops.cudnn:CUDNN",
        "onednn": "loops.onednn:ONEDNN",
        "auto": "loops.auto:AUTO",
    },
    Schedule: {
        "layer": "schedules.layer:LAYER",
        "wavefront": "schedules.wavefront:WAVEFRONT",
        "pipeline": "schedules.pipeline:PIPELINE",
    },
}
_EXAMPLES = {TimeLoop: "drnn.cudnn_time_loop(...)", Schedule: "drnn.pipeline(...)"}


def load(kind, name: str):
  """The registered object `name` of `kind` (TimeLoop or Schedule)."""
  module, attr = ENTRIES[kind][name].split(":")
  return getattr(importlib.import_module(_PREFIX + module), attr)


def resolve(argname: str, kind, value):
  """`value` itself when it is a `kind`, the registered one when it is a name; else a
  ValueError naming `argname`, the names and what came."""
  if isinstance(value, kind):
    return value
  names = tuple(ENTRIES[kind])
  if not isinstance(value, str) or value not in names:
    raise ValueError(f"{argname}: expected one of {names} or a {kind.__name__} such as "
                     f"{_EXAMPLES[kind]}, got {value!r}")
  return load(kind, value)
