"""Where do deeper stacks overfit? The IMDB classifier against depth and data size.

    python -m studies.overfit                  # the whole study (about 10 minutes here)
    python -m studies.overfit --table          # the table of what is done; plot redrawn
    python -m studies.overfit --fractions 8 --depths 1 --seeds 0 --epochs 1 \\
        --out /tmp/overfit --limit-test 200    # a smoke test

The depth study (studies/depth.py) run on 1/8, 1/4, 1/2 and all of the 25,000 training
reviews (its --limit-train: the first N, 20% of them held out for validation, so the
validation set shrinks with the data), for depths 1, 2, 4 of LSTM width 32, each without
and with dropout (--dropout 0.2 on the word vectors, between layers and on the pooled
features; no residual connections, so that dropout is the only change), over seeds 0,
1 and 2, 3 epochs, tested on all 25,000 test reviews with the best validation epoch's
params. The train-validation gap is the train accuracy of those params in evaluation
mode (on as many training reviews as the validation split has) minus the best
validation accuracy.

One results file per data size in --out (train<N>.json, the depth study's format,
resumable: a rerun skips finished runs); --table merges them.
"""

import argparse
import os
import sys

import numpy as np

from studies import depth
from studies import depth_report

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN_REVIEWS = 25000


def parser():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              epilog=__doc__[__doc__.index("The depth study"):],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--fractions", type=depth._positive, default=(8, 4, 2, 1),
                 help="train on 1/K of the training reviews for each K (8,4,2,1)")
  p.add_argument("--cells", default="lstm")
  p.add_argument("--width", default="32")
  p.add_argument("--depths", default="1,2,4")
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--epochs", default="3")
  p.add_argument("--limit-test", default="0")
  p.add_argument("--out", default=os.path.join(HERE, "results", "overfit"),
                 help="the folder of the per-size results files and the plot")
  p.add_argument("--table", action="store_true", help="print the table, redraw the plot")
  return p


def path(out, fraction):
  return os.path.join(out, f"train{TRAIN_REVIEWS // fraction}.json")


def depth_argv(args, fraction):
  return ["--cells", args.cells, "--widths", args.width, "--depths", args.depths,
          "--seeds", args.seeds, "--regularised", "both", "--regulariser", "dropout",
          "--epochs", args.epochs, "--limit-train", str(TRAIN_REVIEWS // fraction),
          "--limit-test", args.limit_test, "--out", path(args.out, fraction)]


def rows(args):
  """Every finished row of every size, with its n_train."""
  out = []
  for fraction in args.fractions:
    if os.path.exists(path(args.out, fraction)):
      out += [r for r in depth.read_results(path(args.out, fraction))["rows"]
              if r["status"] == "ok"]
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


def main(argv=None):
  args = parser().parse_args(argv)
  if not args.table:
    for fraction in args.fractions:
      print(f"\n== 1/{fraction} of the training reviews ==", flush=True)
      status = depth.main(depth_argv(args, fraction))
      if status:
        return status
  found = rows(args)
  if found:
    print("\n".join(table(found)))
    plot(found, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
