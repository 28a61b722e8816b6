"""What do more devices buy on this machine? Data parallel against device count, the
pipeline against stage count and chunk size.

    python benchmarks/tools/scaling.py                               # prints the tables
    python benchmarks/tools/scaling.py --json benchmarks/results/scaling-cpu.json --md \\
        benchmarks/results/scaling-cpu.md

Each configuration runs in a fresh process with `jax_num_cpu_devices` set to its device
count (a process's device count is fixed once JAX starts). Timed: one training step,
the gradient of a loss of the outputs and final states (Adam's update is left out: it
does not scale with either method). Trace, compile and run are timed apart; the run time
is the best of --repeats rounds of --steps calls, after two warm-up calls.

Data parallel: an LSTM stack [B, T, F] = [64, 100, 128], 4 layers of 128, the batch split
over N devices of a 1-D mesh ("data", Explicit), parameters replicated. Pipeline: 8
layers of 128 (input 128, so the whole stack is one group), [64, 128, 128], split over S
stages of a mesh axis, time cut into chunks of C steps; S = 1 is the layer schedule on
one device. Virtual CPU devices share this machine's cores: with 2 cores nothing can go
past 2x, and what is left is overhead (the tables say how much).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]


def child(spec):
  """Runs one configuration in this process; returns its measurement."""
  import jax
  jax.config.update("jax_num_cpu_devices", spec["devices"])
  import jax.numpy as jnp
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
  import deeprnn_jax as drnn

  B, T, H, L = spec["batch"], spec["time"], spec["hidden"], spec["layers"]
  mesh, schedule = None, "layer"
  if spec["kind"] == "data" and spec["devices"] > 1:
    mesh = jax.make_mesh((spec["devices"],), ("data",), axis_types=(AxisType.Explicit,))
  if spec["kind"] == "pipeline" and spec["devices"] > 1:
    mesh = jax.make_mesh((spec["devices"],), ("stage",), axis_types=(AxisType.Auto,))
    schedule = drnn.pipeline("stage", spec["chunk"], mesh=mesh)
  model = drnn.stacked_rnn("lstm", H, (H,) * L, schedule=schedule)
  params = model.init(jax.random.key(0))
  xs = jax.random.normal(jax.random.key(1), (B, T, H))

  def loss(p, x):
    ys, state = model.apply(p, x)
    return jnp.mean(ys ** 2) + sum(jnp.mean(a ** 2) for a in jax.tree.leaves(state))

  grad = jax.jit(jax.grad(loss))
  if spec["kind"] == "data" and mesh is not None:
    xs = jax.device_put(xs, NamedSharding(mesh, P("data")))
  with jax.set_mesh(mesh) if mesh is not None else _nothing():
    t0 = time.perf_counter()
    lowered = grad.trace(params, xs).lower()
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    for _ in range(2):
      jax.block_until_ready(compiled(params, xs))
    best = float("inf")
    for _ in range(spec["repeats"]):
      start = time.perf_counter()
      for _ in range(spec["steps"]):
        out = compiled(params, xs)
      jax.block_until_ready(out)
      best = min(best, (time.perf_counter() - start) / spec["steps"])
  return {**spec, "trace_s": t1 - t0, "compile_s": t2 - t1,
          "step_ms": 1000 * best, "tokens_per_s": B * T / best,
          "collective_permute": "collective-permute" in compiled.as_text()}


class _nothing:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def run_child(spec):
  done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                        capture_output=True, text=True, timeout=900,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  if done.returncode:
    raise RuntimeError(f"{spec}: {done.stderr[-2000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def configurations(args):
  common = dict(steps=args.steps, repeats=args.repeats, hidden=128)
  data = [dict(common, kind="data", devices=n, batch=64, time=100, layers=4, chunk=0)
          for n in args.devices]
  pipe = [dict(common, kind="pipeline", devices=1, batch=64, time=128, layers=8, chunk=0)]
  pipe += [dict(common, kind="pipeline", devices=s, batch=64, time=128, layers=8, chunk=c)
           for s in args.stages if s > 1 for c in args.chunks]
  return data + pipe


def tables(rows, cpu):
  import deeprnn_jax as drnn
  lines = [f"CPU: {cpu}; virtual CPU devices (`jax_num_cpu_devices`) sharing its cores.", "",
           "Data parallel, LSTM 4 x 128, [B, T, F] = [64, 100, 128], gradient step:", "",
           "| devices | step ms | tokens/s | speed-up | efficiency | compile s |",
           "| --- | --- | --- | --- | --- | --- |"]
  data = [r for r in rows if r["kind"] == "data"]
  base = next(r for r in data if r["devices"] == 1)
  for r in data:
    up = base["step_ms"] / r["step_ms"]
    lines.append(f"| {r['devices']} | {r['step_ms']:.1f} | {r['tokens_per_s']:.0f} | "
                 f"{up:.2f}x | {up / r['devices']:.0%} | {r['compile_s']:.1f} |")
  lines += ["", "Pipeline, LSTM 8 x 128, [64, 128, 128], gradient step (stages 1: the layer "
            "schedule):", "",
            "| stages | chunk | idle fraction (S-1)/(T/C+S-1) | step ms | tokens/s | "
            "speed-up | collective-permute | compile s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  pipe = [r for r in rows if r["kind"] == "pipeline"]
  base = next(r for r in pipe if r["devices"] == 1)
  for r in pipe:
    idle = drnn.pipeline_idle_fraction(r["time"], r["chunk"], r["devices"]) if r["chunk"] else 0
    lines.append(f"| {r['devices']} | {r['chunk'] or '-'} | {idle:.2f} | {r['step_ms']:.1f} | "
                 f"{r['tokens_per_s']:.0f} | {base['step_ms'] / r['step_ms']:.2f}x | "
                 f"{'yes' if r['collective_permute'] else 'no'} | {r['compile_s']:.1f} |")
  return "\n".join(lines) + "\n"


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--child", help=argparse.SUPPRESS)
  p.add_argument("--devices", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
  p.add_argument("--stages", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4])
  p.add_argument("--chunks", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32])
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--json")
  p.add_argument("--md")
  args = p.parse_args()
  if args.child:
    print(json.dumps(child(json.loads(args.child))))
    return
  sys.path.insert(0, str(REPO))  # the checkout
  from examples.common import provenance
  origin = provenance.collect(sys.argv[1:])
  rows = []
  for spec in configurations(args):
    rows.append(run_child(spec))
    print(json.dumps({k: rows[-1][k] for k in ("kind", "devices", "chunk", "step_ms")}),
          flush=True)
  text = tables(rows, origin["cpu"])
  print(text)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps({"provenance": origin, "rows": rows},
                                                  indent=1))
  if args.md:
    pathlib.Path(args.md).write_text(text)


if __name__ == "__main__":
  main()
