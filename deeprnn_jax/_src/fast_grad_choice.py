"""Where the custom-JVP time scan is the default: decided per backend by measurement.

A cell's fast rule (`fast_scan.FastRule`) gives the same numbers as autodiff of the plain
scan; whether it is faster depends on the backend and the machine (it trades the backward
loop's per-step weight-gradient updates for one large matmul after it).
`python benchmarks/fast_grad.py --json FILE` times both on the machine at hand; each
such measurement is a row of `MEASURED` (its file is committed under
benchmarks/results/, and a test checks the row against it). A cell gets its rule by
default on a backend where the geometric mean of its measured speed-ups is above 1; a
backend or cell never measured gets autodiff, the path JAX itself takes.
"""

import math

import jax

# backend -> [(where it was measured, the result file or None, {cell kind: time of one
# layer's gradient (B=64, T=100, F=H=256) with autodiff / time with the rule})]
MEASURED = {
    "cpu": [
        ("2-core AMD EPYC, JAX 0.10.2, 2026-11-27", None,  # benchmarks/NOTES.md v7
         {"rnn": 1.55, "lstm": 1.16, "gru": 0.95}),
        ("2-core Intel Xeon (AVX-512), JAX 0.10.2, 2026-11-30",
         "benchmarks/results/fast-grad-cpu.json", {"rnn": 1.19, "lstm": 1.00, "gru": 0.92}),
    ],
}


def speedup(kind: str, backend: str) -> float:
  """The geometric mean of `kind`'s measured speed-ups on `backend` (0 if never measured)."""
  values = [row[kind] for _, _, row in MEASURED.get(backend, ()) if kind in row]
  if not values:
    return 0.0
  return math.exp(sum(math.log(v) for v in values) / len(values))


def prefers_fast(kind: str, backend=None) -> bool:
  """Whether the rule measured faster than autodiff for `kind` on `backend` (default:
  JAX's default backend)."""
  return speedup(kind, jax.default_backend() if backend is None else backend) > 1.0
