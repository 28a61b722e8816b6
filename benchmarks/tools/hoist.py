"""Whether hoisting a layer's input projection out of the time scan is faster here: the
measurement behind `deeprnn_jax/_src/loops/tuning.json` (hoist).

    python benchmarks/tools/hoist.py --json benchmarks/results/hoist-cpu.json

For each cell, width H and input width F (by default F = H, 2H and 4H: hoisting pays
where the input is wider than the state) it compiles the gradient of one layer (of
sum(ys^2), with respect to the params and the inputs, as a layer inside a stack needs)
over B=32, T=100 steps once with the projection hoisted and once inside the loop
(autodiff of the plain scan, never the fast rule), warms both up, then times them
alternately (best of --repeats rounds of --steps calls each, or more calls where
they would take under 0.1 s) and prints the speed-up
in-loop / hoisted and the row of `MEASURED` for this backend: per point, the
geometric mean over --rounds rounds of the whole measurement. Run it on a quiet
machine; it prints the device and CPU it ran on.
"""

import argparse
import json
import math
import pathlib
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the checkout
from examples.common import provenance  # noqa: E402
from fast_grad import best_seconds  # noqa: E402

from deeprnn_jax._src.cells import make_cell  # noqa: E402
from deeprnn_jax._src.loops.scan import scan_layer  # noqa: E402


def gradient(cell, hoist):
  def loss(params, xs, carry):
    _, ys = scan_layer(cell, params, xs, carry, fast_grad=False, hoist=hoist)
    return jnp.sum(ys * ys)

  return jax.jit(jax.grad(loss, argnums=(0, 1)))


def measure(kind, batch, time_steps, width, input_size, steps, repeats):
  cell = make_cell(kind, width)
  params = cell.init(jax.random.key(0), input_size)
  xs = jax.random.normal(jax.random.key(1), (time_steps, batch, input_size))
  args = (params, xs, cell.initial_carry(batch))
  fns = {hoist: gradient(cell, hoist) for hoist in (True, False)}
  for fn in fns.values():  # compile and warm up
    jax.block_until_ready(fn(*args))
  # a timing of at least ~0.1 s: at small widths a call takes ~1 ms, and a few calls'
  # timing is mostly this shared machine's noise
  steps = max(steps, math.ceil(0.1 / best_seconds(fns[False], args, 3, 1)))
  times = {True: float("inf"), False: float("inf")}
  for _ in range(repeats):  # alternate, so that drifts in machine load hit both
    for hoist, fn in fns.items():
      times[hoist] = min(times[hoist], best_seconds(fn, args, steps, 1))
  return {"cell": kind, "width": width, "input_size": input_size, "steps": steps,
          "hoisted_ms": 1e3 * times[True], "in_loop_ms": 1e3 * times[False],
          "speedup": times[False] / times[True]}


def table(rows):
  """{cell: {(H, F): geometric mean speed-up over the rounds, 2 places}}: a row of
  hoist_choice.MEASURED."""
  logs = {}
  for r in rows:
    point = (r["width"], r["input_size"])
    logs.setdefault(r["cell"], {}).setdefault(point, []).append(math.log(r["speedup"]))
  return {cell: {p: round(math.exp(sum(v) / len(v)), 2) for p, v in points.items()}
          for cell, points in logs.items()}


def input_sizes(specs, width):
  """The input widths F for width H: "32" is 32, "4H" is 4 * H, "H" is H."""
  sizes = {int(s[:-1] or 1) * width if s.endswith("H") else int(s) for s in specs}
  return sorted(sizes)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cells", nargs="+", default=["lstm", "gru"])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--time", type=int, default=100)
  p.add_argument("--width", type=lambda s: [int(w) for w in s.split(",")],
                 default=[5, 16, 64, 256], help="H, comma-separated")
  p.add_argument("--inputs", type=lambda s: s.split(","), default=["H", "2H", "4H"],
                 help="input widths F per H: a number, or a multiple of H like H or 4H")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--repeats", type=int, default=7)
  p.add_argument("--rounds", type=int, default=3,
                 help="measure every point this many times, a round after another")
  p.add_argument("--json", type=pathlib.Path)
  args = p.parse_args(argv)
  origin = provenance.collect(argv)
  rows = [dict(measure(k, args.batch, args.time, w, f, args.steps, args.repeats), round=i)
          for i in range(args.rounds) for w in args.width for k in args.cells
          for f in input_sizes(args.inputs, w)]
  print(f"backend {jax.default_backend()}, {origin.get('cpu')}, jax {jax.__version__}")
  print(f"one layer's gradient (params and inputs), B={args.batch} T={args.time}")
  print("| round | cell | H | F | hoisted ms | in-loop ms | speed-up |\n"
        "|---:|---|---:|---:|---:|---:|---:|")
  for r in rows:
    print(f"| {r['round']} | {r['cell']} | {r['width']} | {r['input_size']} | "
          f"{r['hoisted_ms']:.2f} | {r['in_loop_ms']:.2f} | {r['speedup']:.2f} |")
  print(f"MEASURED[{jax.default_backend()!r}] row: " + repr(table(rows)))
  if args.json:
    args.json.write_text(json.dumps({"backend": jax.default_backend(), "rows": rows,
                                     "sizes": vars(args) | {"json": str(args.json)},
                                     "provenance": origin}, indent=1, default=str))


if __name__ == "__main__":
  main()
