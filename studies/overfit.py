"""Where do deeper stacks overfit? The IMDB classifier against depth and data size.

    python -m studies.overfit                  # the whole study (about 10 minutes here)
    python -m studies.overfit --table          # the table of what is done; plot redrawn
    python -m studies.overfit --fractions 8 --depths 1 --seeds 0 --epochs 1 \\
        --out /tmp/overfit --limit-test 200    # a smoke test

The depth study (studies/depth.py) run on 1/8, 1/4, 1/2 and all of the 25,000 training
reviews (its --limit-train: the first N, 20% of them held out for validation, so the
validation set shrinks with the data), for depths 1, 2, 4 of LSTM width 32, each without
and with dropout (--dropout 0.2 on the word vectors, between layers and on the pooled
features; no residual connections, so that dropout is the only change), over seeds 0
and 1, 3 epochs, tested on all 25,000 test reviews with the best validation epoch's
params. The train-validation gap is the train accuracy of those params in evaluation
mode (on as many training reviews as the validation split has) minus the best
validation accuracy.

One results file per data size in --out (train<N>.json, the depth study's format,
resumable: a rerun skips finished runs); --table merges them.
"""

import argparse
import os
import sys

from studies import depth
from studies import overfit_report as report

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
  p.add_argument("--seeds", default="0,1")
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
  """Every finished row of every size asked for."""
  return report.rows([path(args.out, f) for f in args.fractions])


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
    print("\n".join(report.table(found)))
    report.plot(found, args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
