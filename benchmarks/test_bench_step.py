"""The benchmark: one training step per impl and grid point (the grid is in grid.py).

For each point: build the impl's workload, time trace + lower + compile (JAX), run one
warm-up step (timed as first_step_s), then let pytest-benchmark time steady-state steps,
each blocking until its outputs are ready. Rounds are sized from the warm-up step so that
each benchmark spends about the grid's `seconds` (at least 3 rounds) in steady state.
Everything a report needs goes into `benchmark.extra_info` and so into the JSON.
"""

import datetime
import functools
import importlib.metadata
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

import workloads as wl

MIN_ROUNDS, MAX_ROUNDS = 3, 50
HERE = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def _versions():
  out = {}
  for dist in ("deeprnn_jax", "jax", "jaxlib", "flax", "optax", "torch"):
    try:
      out[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def _max_rss_bytes():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _in_own_process(point):
  """measure_point.py's result for `point`, run in a fresh interpreter."""
  text = json.dumps({"impl": point.impl, "spec": point.spec._asdict(), "opts": point.opts,
                     "seconds": point.seconds})
  done = subprocess.run([sys.executable, os.path.join(HERE, "measure_point.py"), text],
                        capture_output=True, text=True)
  assert done.returncode == 0, f"{point.label}: measure_point.py failed:\n{done.stderr[-3000:]}"
  return json.loads(done.stdout.strip().splitlines()[-1])


def _here(benchmark, point):
  """The point measured in this process: (compile times, first step, median, memory,
  params, device); pytest-benchmark times the steady state."""
  work = wl.make_workload(point.impl, point.spec, point.opts)
  compile_times = work.compile()
  t0 = time.perf_counter()
  loss = float(work.step())
  first_step_s = time.perf_counter() - t0
  assert np.isfinite(loss), f"{point.label}: loss {loss} after one step"
  rounds = int(np.clip(point.seconds / first_step_s, MIN_ROUNDS, MAX_ROUNDS))
  own_times = []  # the steps' own clock, for --benchmark-disable (pytest-benchmark keeps none)

  def timed_step():
    t = time.perf_counter()
    work.step()
    own_times.append(time.perf_counter() - t)

  benchmark.pedantic(timed_step, rounds=rounds, iterations=1,
                     warmup_rounds=1 if first_step_s * 10 < point.seconds else 0)
  median_s = benchmark.stats.stats.median if benchmark.enabled else float(np.median(own_times))
  return (compile_times, first_step_s, median_s, rounds, work.memory(), work.param_count,
          work.device, {})


def _isolated(benchmark, point):
  """The point measured alone (`_in_own_process`); pytest-benchmark records one round of
  nothing, and the process's own step times are in extra_info (step_times_s, spread)."""
  r = _in_own_process(point)
  benchmark.pedantic(lambda: None, rounds=1, iterations=1)
  times = r["step_times_s"]
  median_s = float(np.median(times))
  compile_times = {k: r.get(k) for k in ("trace_s", "lower_s", "xla_compile_s", "compile_s")}
  own = {"step_times_s": times, "spread": (max(times) - min(times)) / median_s,
         "timed_in": "a process of its own (measure_point.py)"}
  return (compile_times, r["first_step_s"], median_s, len(times), r["memory"], r["params"],
          r["device"], own)


def test_train_step(benchmark, point, matmul_gflops):
  if point.impl == "torch":
    pytest.importorskip("torch")
  spec = point.spec
  rss_before = _max_rss_bytes()
  load = os.getloadavg()[0]
  (compile_times, first_step_s, median_s, rounds, memory, params, device,
   own) = (_isolated if point.isolate else _here)(benchmark, point)
  rss_delta = _max_rss_bytes() - rss_before
  flops = wl.train_flops(spec)
  tokens = spec.batch * spec.time
  benchmark.extra_info.update(
      impl=point.label, cell=spec.cell, depth=spec.depth, hidden=spec.hidden,
      batch=spec.batch, time=spec.time, features=spec.features,
      opts=point.opts, params=params,
      trace_s=compile_times.get("trace_s"), lower_s=compile_times.get("lower_s"),
      xla_compile_s=compile_times.get("xla_compile_s"),
      compile_s=compile_times.get("compile_s"),  # None: eager, nothing compiled
      first_step_s=first_step_s, median_step_s=median_s, rounds=rounds,
      tokens_per_s=tokens / median_s,
      flops_per_step=flops, matmul_gflops=matmul_gflops,
      mfu=flops / median_s / (matmul_gflops * 1e9),
      device=device,
      peak_mem_bytes=memory.get("device_peak_bytes", memory.get("rss_growth_bytes", rss_delta)),
      peak_mem_kind=("device peak bytes in use" if "device_peak_bytes" in memory
                     else "process max-RSS growth during this benchmark"),
      xla_temp_bytes=memory.get("xla_temp_bytes"),
      load_avg_1min=load, versions=_versions(),
      date=datetime.datetime.now().isoformat(timespec="seconds"), **own,
  )
