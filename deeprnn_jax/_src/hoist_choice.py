"""Where the time scan projects every step's input in one matmul before the loop.

`scan_layer` can compute `x_t @ w_ih + b` inside the loop, one [B, F] x [F, G*H] matmul
per step, or hoist it: one [T*B, F] x [F, G*H] matmul before the loop (as Keras 3's JAX
GRU does), which the backward pass mirrors with one matmul each for the input's and
`w_ih`'s gradients instead of T small ones. Which is faster depends on the backend and
the shapes: on the CPU hoisting pays where the input is wider than the state (F = 4H:
1.10-1.40x; F = 2H: 1.03-1.19x), where the per-step input matmuls are most of the loop's
work, and not where F = H (0.90-1.04x), where its fresh [T, B, G*H] buffer costs about
what it saves (benchmarks/NOTES.md v19). `python benchmarks/hoist.py --json FILE` times both on the
machine at hand; each such measurement is a row of `MEASURED` (its file committed under
benchmarks/results/, and a test checks the row against it). The measurement at the
measured (H, F) nearest a layer's decides; a backend or cell never measured keeps the
projection in the loop.
"""

import jax

from deeprnn_jax._src.fast_grad_choice import nearest_speedup

# backend -> [(where it was measured, the result file, {cell kind: {(H, F): time of one
# layer's gradient (params and inputs; B=32, T=100) with the projection in the loop /
# time with it hoisted}})]
MEASURED = {
    "cpu": [
        ("2-core Intel(R) Xeon(R) Processor (AVX-512), JAX 0.10.2, 2026-12-01, 3 rounds",
         "benchmarks/results/hoist-cpu.json",
         {"lstm": {(5, 5): 1.01, (5, 10): 1.08, (5, 20): 1.13, (16, 16): 0.93, (16, 32): 1.03,
                   (16, 64): 1.1, (64, 64): 0.95, (64, 128): 1.13, (64, 256): 1.32,
                   (256, 256): 0.99, (256, 512): 1.19, (256, 1024): 1.38},
          "gru": {(5, 5): 0.9, (5, 10): 1.07, (5, 20): 1.16, (16, 16): 1.01, (16, 32): 1.12,
                  (16, 64): 1.22, (64, 64): 1.03, (64, 128): 1.18, (64, 256): 1.4,
                  (256, 256): 1.04, (256, 512): 1.03, (256, 1024): 1.31}}),
    ],
}
# Hoisting changes the default only where it measured at least this much faster: single
# measurements on a shared 2-core machine move by 5-10%, and a change of default that
# noise decided would move users' numbers (summation order) for nothing.
MARGIN = 1.05


def speedup(kind: str, backend: str, width: int, input_size: int) -> float:
  """`kind`'s measured speed-up from hoisting on `backend` at the measured (H, F) nearest
  (`width`, `input_size`) by ratio (0 if never measured)."""
  return nearest_speedup(MEASURED, kind, backend, (width, input_size))


def prefers_hoisted(kind: str, width: int, input_size: int, backend=None) -> bool:
  """Whether hoisting measured faster (by `MARGIN`) for `kind` at about this width H and
  input width F on `backend` (default: JAX's default backend)."""
  backend = jax.default_backend() if backend is None else backend
  return speedup(kind, backend, width, input_size) >= MARGIN
