"""Where the custom-JVP time scan is the default: decided per backend by measurement.

A cell's fast rule (`fast_scan.FastRule`) gives the same numbers as autodiff of the plain
scan; whether it is faster depends on the backend (it trades the backward loop's per-step
weight-gradient updates for one large matmul after it). `python benchmarks/fast_grad.py`
times both on the machine at hand and prints the rows of `SPEEDUP` for its backend; a
backend or cell with no measurement here gets autodiff, the path JAX itself takes.
"""

import jax

# backend -> cell kind -> time of one layer's gradient with autodiff / with the rule
# (F=H=256), and where it was measured
SPEEDUP = {
    "cpu": {"rnn": 1.55, "lstm": 1.16, "gru": 0.95},
}
MEASURED_ON = {
    "cpu": "2-core AMD EPYC, JAX 0.10.2, 2026-11-27 (benchmarks/NOTES.md, v7)",
}


def prefers_fast(kind: str, backend=None) -> bool:
  """Whether the rule measured faster than autodiff for `kind` on `backend` (default:
  JAX's default backend)."""
  backend = jax.default_backend() if backend is None else backend
  return SPEEDUP.get(backend, {}).get(kind, 0.0) > 1.0
