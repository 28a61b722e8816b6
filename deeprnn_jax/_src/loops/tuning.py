"""Measured choices of the scan time loop, as data: `tuning.json`, one lookup.

Two choices are decided by measurement, per backend and cell kind (`loops/scan.py`):

- `fast_grad`: the cell's custom-JVP rule (`loops/custom_jvp.py`) or autodiff of the
  plain scan. The rule trades the backward loop's per-step weight-gradient updates for
  one large matmul after it: at small widths the loop's per-step op count decides, at
  large ones the matmuls. Used where the speed-up is above 1.
- `hoist`: each step's input projection inside the loop, or one [T*B, F] matmul before
  it. On the CPU hoisting pays where the input is wider than the state (F = 4H:
  1.10-1.40x; F = 2H: 1.03-1.19x) and not where F = H (0.90-1.04x). Used where the
  speed-up is at least `HOIST_MARGIN`: single measurements on a shared 2-core machine
  move by 5-10%, and a change of default that noise decided would move users' numbers
  (summation order) for nothing.

`tuning.json` holds one table per measurement: its backend, CPU family, machine, date,
command and result file (a test checks each table against its committed file), and the
speed-ups per cell kind at measured points, (H,) or (H, F). The lookup pools a backend's
tables across CPU families (the project's machines alternate between AMD EPYC and Intel
Xeon, and a default that flipped between them would change users' numbers from one
machine to the next): the measured point nearest the layer's by ratio decides, by the
geometric mean of its speed-ups. A backend or cell never measured takes the path JAX
itself would (autodiff, the projection in the loop). A new measurement is a new table.
"""

import functools
import json
import math
import pathlib

import jax

HOIST_MARGIN = 1.05
PATH = pathlib.Path(__file__).with_name("tuning.json")


@functools.cache
def tables():
  """{"fast_grad": [table, ...], "hoist": [...]} from tuning.json."""
  data = json.loads(PATH.read_text())
  return {k: v for k, v in data.items() if not k.startswith("_")}


def speedup(choice: str, kind: str, backend: str, where) -> float:
  """The geometric mean of `kind`'s speed-ups for `choice` on `backend`, at the measured
  point nearest `where` (an int H or a tuple (H, F)), by |log(a / b)| summed over the
  sizes; 0 if never measured."""
  where = where if isinstance(where, tuple) else (where,)
  found = [(tuple(int(n) for n in point.split(",")), s)
           for table in tables()[choice] if table["backend"] == backend
           for point, s in table["speedups"].get(kind, {}).items()]
  if not found:
    return 0.0
  distance = lambda p: sum(abs(math.log(a / b)) for a, b in zip(p, where))
  nearest = min({p for p, _ in found}, key=lambda p: (distance(p), p))
  values = [s for p, s in found if p == nearest]
  return math.exp(sum(math.log(v) for v in values) / len(values))


def prefers_fast(kind: str, width: int = 256, backend=None) -> bool:
  """Whether the custom-JVP rule measured faster than autodiff for `kind` at about
  `width` on `backend` (default: JAX's default backend)."""
  backend = jax.default_backend() if backend is None else backend
  return speedup("fast_grad", kind, backend, width) > 1.0


def prefers_hoisted(kind: str, width: int, input_size: int, backend=None) -> bool:
  """Whether hoisting measured faster (by `HOIST_MARGIN`) for `kind` at about this width
  H and input width F on `backend` (default: JAX's default backend)."""
  backend = jax.default_backend() if backend is None else backend
  return speedup("hoist", kind, backend, (width, input_size)) >= HOIST_MARGIN
