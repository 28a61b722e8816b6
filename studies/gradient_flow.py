"""Vanishing and exploding gradients in deep RNNs, measured per layer and time step.

For tanh RNN, ReLU RNN, LSTM and GRU stacks (4 layers, 200 steps) under several
recurrent initialisers, computes ||dLoss/dH_t^l|| with `drnn.diagnostics.
state_gradient_norms` for a loss on the LAST step's output, so the gradient at step t has
travelled T-1-t steps back in time (and down from the top layer). Then repeats the tanh
RNN with its recurrent kernel scaled up (x2.5: exploding; x3: overflowing float32) and
shows what `optax.clip_by_global_norm` does to the parameter gradients.

    python -m studies.gradient_flow                 # writes studies/results/gradient_flow/
    python -m studies.gradient_flow --out /tmp/gf   # elsewhere

The loss is a fixed linear read-out of the top layer's last output, summed over the batch:
loss = sum_b y_{T-1,b} . v with ||v|| = 1, so the gradient at the loss has norm exactly 1
for every sequence and every other number is a gain relative to it.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

import deeprnn_jax as drnn  # noqa: E402
from examples.common import provenance  # noqa: E402

CELLS = {  # name: (cell, nonlinearity)
    "tanh RNN": ("rnn", "tanh"),
    "ReLU RNN": ("rnn", "relu"),
    "LSTM": ("lstm", None),
    "GRU": ("gru", None),
}
INITS = ("orthogonal", "glorot_uniform", "he_normal")  # recurrent kernel initialisers
FLOOR = 1e-12  # plot floor: smaller norms are as good as vanished in float32
CEILING = 1e12  # colour ceiling, 1/FLOOR: white in the colour map is a norm of 1


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                              "gradient_flow"))
  p.add_argument("--layers", type=int, default=4)  # L
  p.add_argument("--time", type=int, default=200)  # T
  p.add_argument("--width", type=int, default=32)  # H, and the input width
  p.add_argument("--batch", type=int, default=16)  # B
  p.add_argument("--scales", type=float, nargs="+", default=[2.5, 3.0])  # recurrent kernel
  # x scale for the exploding runs; the clipping panel shows the first
  p.add_argument("--max-norm", type=float, default=1.0)  # clip_by_global_norm threshold
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args()


def measure(args):
  """All the numbers: {run name: GradientNorms as NumPy}."""
  rng = np.random.default_rng(args.seed)
  xs = jnp.asarray(rng.normal(size=(args.batch, args.time, args.width)), jnp.float32)
  v = rng.normal(size=args.width)
  v = jnp.asarray(v / np.linalg.norm(v), jnp.float32)
  loss_fn = lambda ys: jnp.sum(ys[:, -1] @ v)  # the last step only
  key = jax.random.key(args.seed)
  runs = {}
  for name, (kind, nl) in CELLS.items():
    # One model per cell computes the norms (one compile); models that differ only in
    # their initialiser just make the params.
    model = drnn.stacked_rnn(kind, args.width, (args.width,) * args.layers, nonlinearity=nl)
    for init in INITS:
      params = drnn.stacked_rnn(kind, args.width, (args.width,) * args.layers,
                                nonlinearity=nl, recurrent_init=init).init(key)
      runs[f"{name} / {init}"] = drnn.diagnostics.state_gradient_norms(
          model, params, xs, loss_fn, max_norm=args.max_norm)
    if name == "tanh RNN":  # large recurrent weights, and clipping
      for scale in args.scales:
        params = tuple(dict(g, w_hh=scale * g["w_hh"]) for g in model.init(key))
        runs[f"{name} / orthogonal x{scale:g}"] = drnn.diagnostics.state_gradient_norms(
            model, params, xs, loss_fn, max_norm=args.max_norm)
  return {k: jax.tree.map(np.asarray, r) for k, r in runs.items()}


def plot_heatmaps(runs, args, path):
  fig, axes = plt.subplots(len(CELLS), len(INITS), figsize=(12, 7), sharex=True, sharey=True)
  norm = LogNorm(vmin=FLOOR, vmax=CEILING)  # blue: vanished, white: 1, red: exploded
  for i, name in enumerate(CELLS):
    for j, init in enumerate(INITS):
      ax = axes[i, j]
      state = runs[f"{name} / {init}"].state
      im = ax.imshow(np.clip(state, FLOOR, CEILING), aspect="auto", origin="lower",
                     norm=norm, cmap="RdBu_r", interpolation="nearest")
      ax.set_title(f"{name}, recurrent {init}", fontsize=9)
      if j == 0:
        ax.set_ylabel("layer")
      if i == len(CELLS) - 1:
        ax.set_xlabel("time step t (loss at t = T-1)")
      ax.set_yticks(range(args.layers))
  fig.colorbar(im, ax=axes, label="||dLoss/dH_t^l|| (batch mean)", shrink=0.8)
  fig.suptitle(f"Gradient norm per layer and time step, L={args.layers}, T={args.time}, "
               f"H={args.width}, loss on the last step")
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _visible(norms):
  """NaN (not drawn) below FLOOR and at inf: lines end where the norm vanishes or overflows."""
  return np.where((norms >= FLOOR) & np.isfinite(norms), norms, np.nan)


def plot_curves(runs, args, path):
  fig, axes = plt.subplots(1, len(CELLS), figsize=(14, 3.8), sharey=True)
  distance = args.time - 1 - np.arange(args.time)
  for ax, name in zip(axes, CELLS):
    for c, init in enumerate(INITS):
      state = runs[f"{name} / {init}"].state
      for l, style in ((args.layers - 1, "-"), (0, "--")):
        ax.plot(distance, _visible(state[l]), style, color=f"C{c}",
                label=f"{init}, layer {l}")
    ax.set_yscale("log")
    ax.set_ylim(FLOOR, 1e10)
    ax.set_title(name)
    ax.set_xlabel("steps back from the loss (T-1-t)")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("||dLoss/dH_t^l||")
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, [f"recurrent {x}" for x in labels], loc="lower center",
             ncol=len(INITS) * 2, fontsize=8)
  fig.suptitle(f"Gradient norm against distance from the loss (top layer solid, bottom "
               f"dashed; lines end below {FLOOR:g}), L={args.layers}, T={args.time}, "
               f"H={args.width}", fontsize=10)
  fig.tight_layout(rect=(0, 0.07, 1, 1))
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_exploding(runs, args, path):
  labels = ["orthogonal"] + [f"orthogonal x{s:g}" for s in args.scales]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
  distance = args.time - 1 - np.arange(args.time)
  for c, label in enumerate(labels):
    for l, style in ((args.layers - 1, "-"), (0, "--")):
      ax1.plot(distance, _visible(runs[f"tanh RNN / {label}"].state[l]), style,
               color=f"C{c}", label=f"{label}, layer {l}")
  ax1.set_yscale("log")
  ax1.set_ylim(FLOOR, None)
  ax1.set_xlabel("steps back from the loss (T-1-t); lines end at inf (float32 overflow)")
  ax1.set_ylabel("||dLoss/dH_t^l||")
  ax1.set_title("tanh RNN: state gradients, default vs large recurrent weights", fontsize=10)
  ax1.legend(fontsize=8, loc="upper left")
  ax1.grid(alpha=0.3)

  big = labels[1]
  r = runs[f"tanh RNN / {big}"]
  layers = np.arange(args.layers)
  factor = r.clipped_global_norm / r.global_norm  # clipping scales every leaf alike
  ax2.bar(layers - 0.2, r.params, 0.4, label=f"before: global norm {r.global_norm:.3g}")
  ax2.bar(layers + 0.2, r.params * factor, 0.4,
          label=f"after clip_by_global_norm({args.max_norm:g}): {r.clipped_global_norm:.3g}")
  ax2.set_yscale("log")
  ax2.set_xticks(layers)
  ax2.set_xlabel("layer")
  ax2.set_ylabel("parameter-gradient norm")
  ax2.set_title(f"tanh RNN, {big}: parameter gradients per layer, clipped", fontsize=10)
  ax2.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _num(x):
  """A JSON number with 4 significant digits; null for inf or NaN (float32 overflow)."""
  return float(f"{x:.4g}") if np.isfinite(x) else None


def summary(runs, args):
  """Per run: the norm at 0, 50, 100 and T-1 steps back (top layer, then bottom layer)."""
  at = [d for d in (0, 50, 100, args.time - 1) if d < args.time]
  rows = {}
  for name, r in runs.items():
    top, bottom = r.state[-1][::-1], r.state[0][::-1]  # index = steps back from the loss
    rows[name] = {
        "top_layer_at_distance": {str(d): _num(top[d]) for d in at},
        "bottom_layer_at_distance": {str(d): _num(bottom[d]) for d in at},
        "param_norms": [_num(x) for x in r.params],
        "global_norm": _num(r.global_norm),
        "clipped_global_norm": _num(r.clipped_global_norm),
    }
    print(f"{name:34s} top " + " ".join(f"{top[d]:9.2e}" for d in at) +
          "  | bottom " + " ".join(f"{bottom[d]:9.2e}" for d in at) +
          f"  | global {r.global_norm:9.3g} -> {r.clipped_global_norm:.3g}")
  return rows


def main():
  args = parse_args()
  os.makedirs(args.out, exist_ok=True)
  start = time.perf_counter()
  runs = measure(args)
  print(f"distances {[0, 50, 100, args.time - 1]} steps back from the loss:")
  rows = summary(runs, args)
  plot_heatmaps(runs, args, os.path.join(args.out, "heatmaps.png"))
  plot_curves(runs, args, os.path.join(args.out, "curves.png"))
  plot_exploding(runs, args, os.path.join(args.out, "exploding.png"))
  record = {
      "config": {k: v for k, v in vars(args).items() if k != "out"},
      "recurrent_inits": INITS,
      "loss": "sum over the batch of y_{T-1} . v, ||v|| = 1 (a norm of 1 at the loss)",
      "summary": rows,
      # [L, T] per run: state[l][t] = ||dLoss/dH_t^l||, null where float32 overflowed
      "state_norms": {k: [[_num(x) for x in row] for row in r.state]
                      for k, r in runs.items()},
      "device": jax.devices()[0].device_kind,
      "jax": jax.__version__,
      "provenance": provenance.collect(),  # date, CPU, commit, clean tree: the docs name it
  }
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(record, f, indent=1)
  print(f"wrote {args.out}/*.png and results.json "
        f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
  main()
