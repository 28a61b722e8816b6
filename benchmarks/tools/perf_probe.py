"""Which is faster, here and now? One training step of deeprnn_jax vs Flax linen vs PyTorch.

Not the benchmark suite (that is `pytest benchmarks/`); a small script for the
predict-then-measure loop of issue 5. Impls are interleaved and repeated, so that load
from other processes on a shared machine shows up as spread, not as bias.

    python benchmarks/tools/perf_probe.py --cell lstm --hidden 256 --depth 1 2 4 8 --repeats 3
    python benchmarks/tools/perf_probe.py --impls ours flax --ours-kw schedule=wavefront
"""

import argparse
import os
import sys
import time

if "--threads" in sys.argv:  # must precede importing jax: XLA reads its flags once
  _n = sys.argv[sys.argv.index("--threads") + 1]
  if _n == "1":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false")
    os.environ["NPROC"] = "1"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import deeprnn_jax as drj  # noqa: E402

CLOCK = time.perf_counter

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def train_flops(cell, B, T, F, H, L):
  """Matmul FLOPs of forward + backward (3x forward) of the recurrent stack."""
  g = GATES[cell]
  fwd = sum(2 * B * T * ((F if l == 0 else H) + H) * g * H for l in range(L))
  return 3 * fwd


def matmul_rate(n=1024, reps=10):
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, a).block_until_ready()
  best = 1e9
  for _ in range(reps):
    t = CLOCK()
    f(a, a).block_until_ready()
    best = min(best, CLOCK() - t)
  return 2 * n**3 / best


def _jax_step(loss_fn, params):
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))

  def step(params, opt_state, xs, ys):
    loss, grads = jax.value_and_grad(loss_fn)(params, xs, ys)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1)), params, opt.init(params)


def make_ours(cell, B, T, F, H, L, **kw):
  model = drj.stacked_rnn(cell, F, (H,) * L, **kw)
  key = jax.random.key(0)
  params = {"rnn": model.init(key), "w": jnp.zeros((H, 1)), "b": jnp.zeros((1,))}

  def loss_fn(p, xs, ys):
    out, _ = model.apply(p["rnn"], xs)
    logits = (out[:, -1] @ p["w"] + p["b"])[:, 0]
    return optax.sigmoid_binary_cross_entropy(logits, ys).mean()

  return _jax_step(loss_fn, params)


def make_flax(cell, B, T, F, H, L):
  import flax.linen as nn
  cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "rnn": nn.SimpleCell}[cell]

  class Model(nn.Module):
    @nn.compact
    def __call__(self, xs):
      for _ in range(L):
        xs = nn.RNN(cls(H))(xs)
      return nn.Dense(1)(xs[:, -1])[:, 0]

  model = Model()
  params = model.init(jax.random.key(0), jnp.zeros((B, T, F)))

  def loss_fn(p, xs, ys):
    return optax.sigmoid_binary_cross_entropy(model.apply(p, xs), ys).mean()

  return _jax_step(loss_fn, params)


def make_torch(cell, B, T, F, H, L):
  import torch
  cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
  rnn = cls(F, H, num_layers=L, batch_first=True)
  head = torch.nn.Linear(H, 1)
  params = list(rnn.parameters()) + list(head.parameters())
  opt = torch.optim.Adam(params, 1e-3)

  def step(xs, ys):
    opt.zero_grad()
    out, _ = rnn(xs)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(head(out[:, -1])[:, 0], ys)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss

  return step


class Runner:
  """One impl at one grid point: compiled once, then timed in rounds."""

  def __init__(self, impl, cell, B, T, F, H, L, ours_kw):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(B, T, F)).astype(np.float32)
    ys = (rng.random(B) > 0.5).astype(np.float32)
    self.impl = impl
    t0 = time.perf_counter()
    if impl == "torch":
      import torch
      self.xs, self.ys = torch.from_numpy(xs), torch.from_numpy(ys)
      self.step = make_torch(cell, B, T, F, H, L)
      self.step(self.xs, self.ys)
    else:
      make = make_flax if impl == "flax" else make_ours
      kw = ours_kw if impl == "ours" else {}
      step, self.params, self.opt_state = make(cell, B, T, F, H, L, **kw)
      self.xs, self.ys = jnp.asarray(xs), jnp.asarray(ys)
      self.step = step.lower(self.params, self.opt_state, self.xs, self.ys).compile()
      self.run(1)
    self.compile_s = time.perf_counter() - t0

  def run(self, n):
    if self.impl == "torch":
      for _ in range(n):
        self.step(self.xs, self.ys)
      return
    for _ in range(n):
      self.params, self.opt_state, loss = self.step(self.params, self.opt_state, self.xs,
                                                    self.ys)
    loss.block_until_ready()

  def time_round(self, n):
    t = CLOCK()
    self.run(n)
    return (CLOCK() - t) / n


def parse_kw(items):
  kw = {}
  for item in items:
    k, v = item.split("=")
    kw[k] = int(v) if v.isdigit() else {"True": True, "False": False}.get(v, v)
  return kw


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--cell", default="lstm")
  ap.add_argument("--hidden", type=int, nargs="+", default=[256])
  ap.add_argument("--depth", type=int, nargs="+", default=[1, 2, 4, 8])
  ap.add_argument("--impls", nargs="+", default=["ours", "flax", "torch"])
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--time", type=int, default=100)
  ap.add_argument("--features", type=int, default=32)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--ours-kw", nargs="*", default=[])
  ap.add_argument("--threads", type=int, default=2,
                  help="1: single-threaded XLA and torch, timed by process CPU time (a "
                       "load-independent measure of work on a shared machine)")
  args = ap.parse_args()
  global CLOCK
  import torch
  torch.set_num_threads(args.threads)
  if args.threads == 1:
    CLOCK = time.process_time
  rate = matmul_rate()
  print(f"# matmul 1024^3 float32: {rate / 1e9:.1f} GFLOP/s; ours kw {parse_kw(args.ours_kw)}")
  B, T, F = args.batch, args.time, args.features
  for H in args.hidden:
    for L in args.depth:
      runners = [Runner(i, args.cell, B, T, F, H, L, parse_kw(args.ours_kw))
                 for i in args.impls]
      times = {r.impl: [] for r in runners}
      for _ in range(args.repeats):
        for r in runners:
          times[r.impl].append(r.time_round(args.steps))
      flops = train_flops(args.cell, B, T, F, H, L)
      best = {k: min(v) for k, v in times.items()}
      cols = []
      for r in runners:
        v = times[r.impl]
        cols.append(f"{r.impl} {B * T / best[r.impl]:8.0f} tok/s (best {best[r.impl] * 1e3:6.1f}"
                    f" ms, med {np.median(v) * 1e3:6.1f}, mfu {flops / best[r.impl] / rate:4.0%},"
                    f" compile {r.compile_s:4.1f}s)")
      ratios = " ".join(f"ours/{k}={best[k] / best['ours']:.2f}" for k in best
                        if k != "ours" and "ours" in best)
      print(f"{args.cell} H={H} L={L}: " + " | ".join(cols) + " | " + ratios, flush=True)


if __name__ == "__main__":
  main()
