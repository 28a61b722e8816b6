"""Whether a cell's custom-JVP time scan beats autodiff here: the measurement behind
`deeprnn_jax/_src/loops/tuning.json` (fast_grad).

    python benchmarks/tools/fast_grad.py                      # rnn, lstm, gru; F = H = 256
    python benchmarks/tools/fast_grad.py --width 5,32,128,256 \
        --json benchmarks/results/fast-grad-cpu-widths.json

For each cell and width it compiles one layer's gradient (of sum(ys^2) over B=64, T=100 steps) once
with the cell's fast rule and once with autodiff of the plain scan, warms both up, then
times them alternately (best of --repeats rounds of --steps calls each) and prints the
speed-up autodiff / rule: the entries of `MEASURED` for this backend. Run it on a quiet
machine; it prints the device and CPU it ran on.
"""

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the checkout
from examples.common import provenance  # noqa: E402

from deeprnn_jax._src.cells import make_cell  # noqa: E402
from deeprnn_jax._src.loops.scan import scan_layer  # noqa: E402


def gradient(cell, fast):
  def loss(params, xs, carry):
    _, ys = scan_layer(cell, params, xs, carry, fast_grad=fast)
    return jnp.sum(ys * ys)

  return jax.jit(jax.grad(loss))


def best_seconds(fn, args, steps, repeats):
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      out = fn(*args)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - start) / steps)
  return best


def measure(kind, batch, time_steps, width, steps, repeats):
  cell = make_cell(kind, width)
  params = cell.init(jax.random.key(0), width)
  xs = jax.random.normal(jax.random.key(1), (time_steps, batch, width))
  args = (params, xs, cell.initial_carry(batch))
  fns = {fast: gradient(cell, fast) for fast in (True, False)}
  for fn in fns.values():  # compile and warm up
    jax.block_until_ready(fn(*args))
  times = {True: float("inf"), False: float("inf")}
  for _ in range(repeats):  # alternate, so that drifts in machine load hit both
    for fast, fn in fns.items():
      times[fast] = min(times[fast], best_seconds(fn, args, steps, 1))
  return {"cell": kind, "width": width, "rule_ms": 1e3 * times[True], "autodiff_ms": 1e3 * times[False],
          "speedup": times[False] / times[True]}


def table(rows, default_width=256):
  """{cell: {width: speed-up rounded to 2 places}}: a row of fast_grad_choice.MEASURED
  (files written before widths were recorded measured F = H = `default_width`)."""
  out = {}
  for r in rows:
    out.setdefault(r["cell"], {})[r.get("width", default_width)] = round(r["speedup"], 2)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"])
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--time", type=int, default=100)
  p.add_argument("--width", type=lambda s: [int(w) for w in s.split(",")], default=[256],
                 help="F = H, one or more comma-separated (256)")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--json", type=pathlib.Path)
  args = p.parse_args(argv)
  origin = provenance.collect(argv)
  rows = [measure(k, args.batch, args.time, w, args.steps, args.repeats)
          for w in args.width for k in args.cells]
  print(f"backend {jax.default_backend()}, {origin.get('cpu')}, jax {jax.__version__}")
  print(f"one layer's gradient, B={args.batch} T={args.time}, F = H")
  print("| cell | H | rule ms | autodiff ms | speed-up |\n|---|---:|---:|---:|---:|")
  for r in rows:
    print(f"| {r['cell']} | {r['width']} | {r['rule_ms']:.2f} | {r['autodiff_ms']:.2f} | "
          f"{r['speedup']:.2f} |")
  print(f"MEASURED[{jax.default_backend()!r}] row: " + repr(table(rows)))
  if args.json:
    args.json.write_text(json.dumps({"backend": jax.default_backend(), "rows": rows,
                                     "sizes": vars(args) | {"json": str(args.json)},
                                     "provenance": origin}, indent=1, default=str))


if __name__ == "__main__":
  main()
