"""Does compile time stay flat in depth? Best of N compiles (issue 5: "L=16 within 1.3x of L=2").

The grid (`pytest benchmarks/`) compiles each point once, so its compile column carries
one sample's noise; this script compiles the same training steps (`workloads.py`) N times
each, from cleared caches, and keeps the best, for deeprnn_jax and Flax side by side.

    python benchmarks/tools/compile_depth.py                       # lstm, gru x H 128, 256
    python benchmarks/tools/compile_depth.py --cells lstm --hidden 256 --depth 2 16 --repeats 5
    python benchmarks/tools/compile_depth.py --depth 2 3 4 16 \
        --json benchmarks/results/cpu-2core-compile-depth.json   # what the docs render

With --json it also writes the figures and their provenance (date, CPU, commit, clean
tree: examples/common/provenance.py), from which the docs render the
compile-time page and the README's sentence.
"""

import argparse
import json
import pathlib
import sys

import jax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: the suite
import workloads as wl  # noqa: E402


def best_compile_s(make, spec, repeats):
  """Least trace + lower + compile seconds of `make(spec)`'s step over `repeats` tries."""
  best = None
  for _ in range(repeats):
    jax.clear_caches()
    seconds = make(spec).compile()["compile_s"]
    best = seconds if best is None else min(best, seconds)
  return best


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cells", nargs="+", default=["lstm", "gru"])
  p.add_argument("--hidden", nargs="+", type=int, default=[128, 256])
  p.add_argument("--depth", nargs="+", type=int, default=[2, 4, 8, 16])
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--json", type=pathlib.Path, help="also write the results here")
  args = p.parse_args(argv)
  results = []
  impls = {"deeprnn_jax": wl.deeprnn_workload, "flax": wl.flax_workload}
  first, last = args.depth[0], args.depth[-1]
  print(f"# Compile time against depth (best of {args.repeats}), {wl.jax_device_name()}\n")
  print(f"Training step of `benchmarks/workloads.py`, B=64, T=100, F=32; seconds of "
        f"trace + lower + compile.\n")
  head = ["cell", "H", "impl"] + [f"L={d}" for d in args.depth] + [f"L={last} / L={first}"]
  print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
  for cell in args.cells:
    for hidden in args.hidden:
      for name, make in impls.items():
        # one untimed compile first: the process's one-time costs (JAX's own caches, LLVM
        # set-up) would otherwise land on the first depth and flatter the ratio
        best_compile_s(make, wl.Spec(cell=cell, hidden=hidden, depth=args.depth[0]), 1)
        times = [best_compile_s(make, wl.Spec(cell=cell, hidden=hidden, depth=d), args.repeats)
                 for d in args.depth]
        results.append({"cell": cell, "hidden": hidden, "impl": name, "seconds": times})
        cols = [cell, str(hidden), name] + [f"{t:.2f}" for t in times]
        print("| " + " | ".join(cols + [f"{times[-1] / times[0]:.2f}"]) + " |", flush=True)
  if args.json:
    write_json(args, results)


def write_json(args, results):
  """The figures with where they came from: the docs say only what this records."""
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the checkout
  from examples.common import provenance
  data = {"provenance": provenance.collect(), "device": wl.jax_device_name(),
          "repeats": args.repeats, "depths": args.depth,
          **{k: wl.Spec._field_defaults[k] for k in ("batch", "time", "features")},
          "results": results}
  args.json.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
  main()
