"""What is the trainer's allocator setting (examples/common/allocator.py) worth? One command.

    python benchmarks/tools/measure_allocator.py --preset strong   # about 6 min, 2 cores

Runs `train.py` with the given flags twice in fresh processes, without the setting (its
`keep_freed_memory` replaced by a no-op) and then with it, and writes
benchmarks/results/allocator.json: each run's epoch seconds, whole-command seconds,
minor page faults, kernel and user CPU seconds and test accuracy, whether the metrics
are identical, and this process's provenance. The docs render the allocator table
(docs/performance) from that file. Each run's metrics.json and train.log stay
under --runs-dir.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))  # the checkout
sys.path.insert(0, ROOT)
from examples.common import provenance  # noqa: E402

RESULT = os.path.join(ROOT, "benchmarks", "results", "allocator.json")
# The child runs the trainer's main in-process, with the allocator module patched first;
# the trainer itself stays exactly as users run it.
CHILD = """
import runpy, sys
sys.path.insert(0, {root!r})
from examples.common import allocator
if {off!r}:
  allocator.keep_freed_memory = lambda *a, **k: False
sys.argv = ["examples/imdb/main.py", *sys.argv[1:]]
runpy.run_module("examples.imdb.main", run_name="__main__")
"""


def run_once(train_args, out, off):
  """One training run in a fresh process; its own resource usage and wall time."""
  os.makedirs(out, exist_ok=True)
  code = CHILD.format(root=ROOT, off=off)
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, "-c", code, *train_args, "--out", out],
                        stdout=subprocess.PIPE, text=True)
  wall = time.perf_counter() - t0
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  with open(os.path.join(out, "train.log"), "w") as f:
    f.write(proc.stdout + f"WALL {wall:.2f} s\n")
  if proc.returncode:
    raise SystemExit(f"measure_allocator: train.py exited {proc.returncode} (log in {out})")
  with open(os.path.join(out, "metrics.json")) as f:
    metrics = json.load(f)
  return metrics, {"out": out, "wall_s": wall,
                   "minflt": after.ru_minflt - before.ru_minflt,
                   "stime_s": after.ru_stime - before.ru_stime,
                   "utime_s": after.ru_utime - before.ru_utime,
                   "epoch_seconds": [h["seconds"] for h in metrics["history"]],
                   "test_accuracy": metrics["test"]["accuracy"]}


def same_metrics(a, b):
  """Everything but the clocks and the provenance."""
  def strip(m):
    history = [{k: v for k, v in h.items() if k not in ("seconds", "ms_per_step")}
               for h in m["history"]]
    return history, m["test"], m["test_last_epoch"], m["best"]
  return strip(a) == strip(b)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs-dir", default="runs/allocator")
  p.add_argument("--result", default=RESULT)
  args, train_args = p.parse_known_args(argv)
  origin = provenance.collect(sys.argv[1:] if argv is None else argv)
  runs, metrics = {}, {}
  for name, off in (("without", True), ("with", False)):
    metrics[name], runs[name] = run_once(train_args, os.path.join(args.runs_dir, name), off)
  result = {"provenance": origin, "command": origin["command"], "train_args": train_args,
            "runs": runs, "same_metrics": same_metrics(metrics["without"], metrics["with"])}
  with open(args.result, "w") as f:
    json.dump(result, f, indent=1)
  print(args.result)


if __name__ == "__main__":
  main()
