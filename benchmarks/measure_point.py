"""One benchmark point measured alone in this process: `python benchmarks/measure_point.py
POINT_JSON` prints one JSON line of what test_bench_step records.

The suite runs a point here, in a fresh interpreter, when the grid says `isolate`
(the published grid does): every impl then has the machine's cores to itself, with no
other framework's thread pool spinning beside it (oneDNN's OpenMP pool beside PyTorch's
slowed PyTorch 2-14x in one process), and each impl's process gets the same allocator
setting as the trainers (examples/common/allocator.py), so that none pays page faults
the others do not. The timing is the suite's: trace, lower and compile apart, one
warm-up step, then steady-state steps on the process's own clock.
"""

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # workloads; examples (the allocator)

MIN_ROUNDS, MAX_ROUNDS = 3, 50


def measure(impl, spec, opts, seconds):
  """{compile times, first_step_s, step_times_s, params, device}: one point, timed."""
  import resource
  import workloads as wl
  rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
  before = rss()
  work = wl.make_workload(impl, spec, opts)
  compile_times = work.compile()
  t0 = time.perf_counter()
  loss = float(work.step())
  first_step_s = time.perf_counter() - t0
  if not np.isfinite(loss):
    raise FloatingPointError(f"{impl}: loss {loss} after one step")
  rounds = int(np.clip(seconds / first_step_s, MIN_ROUNDS, MAX_ROUNDS))
  if first_step_s * 10 < seconds:
    work.step()  # a warm-up round, as pytest-benchmark's
  times = []
  for _ in range(rounds):
    t = time.perf_counter()
    work.step()
    times.append(time.perf_counter() - t)
  return {**compile_times, "first_step_s": first_step_s, "step_times_s": times,
          "params": work.param_count, "device": work.device,
          "memory": {"rss_growth_bytes": rss() - before, **work.memory()}}


def main(argv):
  point = json.loads(argv[0])
  from examples.common import allocator
  allocator.keep_freed_memory()
  import workloads as wl
  import jax
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam: float ** int32
    info = measure(point["impl"], wl.Spec(**point["spec"]), point["opts"], point["seconds"])
  print(json.dumps(info))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
