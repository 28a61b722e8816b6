"""The overfitting study's table and plot, from its rows alone (no JAX: the docs render
them). A row is studies/depth.py's, with its `n_train`."""

import json
import os

import numpy as np

from studies import depth_report


def rows(paths):
  """Every finished row of the per-size results files in `paths` that exist."""
  out = []
  for p in paths:
    if os.path.exists(p):
      with open(p) as f:
        out += [r for r in json.load(f)["rows"] if r["status"] == "ok"]
  return out


def grouped(found):
  g = {}
  for r in found:
    g.setdefault((r["cell"], r["regularised"], r["depth"], r["n_train"]), []).append(r)
  return dict(sorted(g.items()))


def table(found):
  """Markdown: a line per (cell, dropout, depth, training reviews), mean ± half range."""
  cell = depth_report._cell
  lines = ["| cell | dropout | depth | training reviews | seeds | train acc | best val acc | "
           "test acc | train - val gap |", "| --- " * 9 + "|"]
  for (c, reg, d, n), rs in grouped(found).items():
    col = lambda f: [r[f] for r in rs]
    lines.append(f"| {c.upper()} | {rs[0]['dropout'] if reg else 0} | {d} | {n:,} | {len(rs)} | "
                 f"{cell(col('train_accuracy'), 4)} | {cell(col('best_val_accuracy'), 4)} | "
                 f"{cell(col('test_accuracy'), 4)} | {cell(col('gap'), 4)} |")
  return lines


def plot(found, out):
  """gap.png: the train-validation gap and the test accuracy against training reviews,
  a line per depth, solid without dropout and dashed with it."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  lines = {}
  for (c, reg, d, n), rs in grouped(found).items():
    lines.setdefault((c, reg, d), []).append((n, rs))
  for (c, reg, d), pts in lines.items():
    for ax, field in zip(axes, ("gap", "test_accuracy")):
      ys = [[r[field] for r in rs] for _, rs in pts]
      ax.errorbar([n for n, _ in pts], [np.mean(y) for y in ys],
                  yerr=[np.ptp(y) / 2 for y in ys], fmt=("--" if reg else "-") + "o",
                  color=f"C{[1, 2, 4].index(d) if d in (1, 2, 4) else 3}", capsize=3,
                  label=f"{c.upper()} depth {d}{', dropout' if reg else ''}")
  for ax, label in zip(axes, ("train - validation accuracy", "test accuracy")):
    ax.set(xscale="log", xlabel="training reviews", ylabel=label)
    ax.grid(alpha=0.3, which="both")
  axes[0].legend(fontsize=7)
  r = found[0]
  fig.suptitle(f"IMDB classifier, width {r['width']}, mean over seeds (bars: half the "
               f"range)", fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(out, "gap.png"), dpi=80)
  plt.close(fig)


