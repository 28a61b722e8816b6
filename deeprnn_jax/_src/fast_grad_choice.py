"""Where the custom-JVP time scan is the default: decided per backend and width by measurement.

A cell's fast rule (`fast_scan.FastRule`) gives the same numbers as autodiff of the plain
scan; whether it is faster depends on the backend, the machine and the width (it trades
the backward loop's per-step weight-gradient updates for one large matmul after it: at
small widths the loop's per-step op count decides, at large ones the matmuls).
`python benchmarks/fast_grad.py --width 5,32,128,256 --json FILE` times both on the
machine at hand; each such measurement is a row of `MEASURED` (its file is committed
under benchmarks/results/, and a test checks the row against it). For a layer of width
H, the measurements taken at the measured width nearest H (by ratio) decide: the cell
gets its rule by default where their geometric mean speed-up is above 1; a backend or
cell never measured gets autodiff, the path JAX itself takes.
"""

import math

import jax

# backend -> [(where it was measured, the result file or None, {cell kind: {width H: time
# of one layer's gradient (B=64, T=100, F=H) with autodiff / time with the rule}})]
MEASURED = {
    "cpu": [
        ("2-core AMD EPYC, JAX 0.10.2, 2026-11-27", None,  # benchmarks/NOTES.md v7
         {"rnn": {256: 1.55}, "lstm": {256: 1.16}, "gru": {256: 0.95}}),
        ("2-core Intel Xeon (AVX-512), JAX 0.10.2, 2026-11-30",
         "benchmarks/results/fast-grad-cpu.json",
         {"rnn": {256: 1.19}, "lstm": {256: 1.00}, "gru": {256: 0.92}}),
    ],
}


def nearest_speedup(measured, kind: str, backend: str, where) -> float:
  """The geometric mean of `kind`'s speed-ups in `measured` (a table shaped like
  `MEASURED`) on `backend` at the measured point nearest `where` (0 if never measured).

  A point is a width (this file's tables) or a tuple of sizes (`hoist_choice.py`'s
  (H, F)); nearness is by ratio, summed over the sizes: |log(a / b)| + ...
  """
  as_tuple = lambda p: p if isinstance(p, tuple) else (p,)
  found = [(as_tuple(p), s) for _, _, row in measured.get(backend, ())
           for p, s in row.get(kind, {}).items()]
  if not found:
    return 0.0
  where = as_tuple(where)
  distance = lambda p: sum(abs(math.log(a / b)) for a, b in zip(p, where))
  nearest = min({p for p, _ in found}, key=lambda p: (distance(p), p))
  values = [s for p, s in found if p == nearest]
  return math.exp(sum(math.log(v) for v in values) / len(values))


def speedup(kind: str, backend: str, width: int = 256) -> float:
  """The geometric mean of `kind`'s speed-ups measured on `backend` at the measured width
  nearest `width` (0 if never measured)."""
  return nearest_speedup(MEASURED, kind, backend, width)


def prefers_fast(kind: str, backend=None, width: int = 256) -> bool:
  """Whether the rule measured faster than autodiff for `kind` at about `width` on
  `backend` (default: JAX's default backend)."""
  return speedup(kind, jax.default_backend() if backend is None else backend, width) > 1.0
