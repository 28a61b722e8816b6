"""When does depth pay on characters? LSTM and GRU character-level LMs on IMDB text.

    python -m studies.char_lm                  # the whole study (about 80 minutes here)
    python -m studies.char_lm --table          # the finished rows as Markdown; plots redrawn
    python -m studies.char_lm --cells lstm --depths 1,2 --tokens 20000 --no-peer \\
        --results /tmp/tiny.json -- --val-reviews 4 --test-reviews 4   # a smoke test

The character-level model of examples/lm (`--level char`: the text as written, 200 ids,
bits per character), trained on the 50,000 unlabelled reviews and scored on held-out
reviews of the labelled test split, at depths 1, 2, 3 (plain stacks) and 4, 6, 8 (with
residual connections, Wu et al. 2016; depth 4 also without, to show what they change),
for each cell in two setups:
  equal_params  every depth's stack has about as many parameters as one layer of
                --hidden (256): the width is the integer whose stack's exact count
                (counted from the library's own init) is nearest. FLOPs per character
                follow the parameters, so these points also share one compute budget.
  equal_width   every layer is --width (128) wide: deeper stacks cost more.
Every point trains on the same --tokens characters (one pass, never repeated text), so
the budget is data and compute, not wall time: the study runs on a busy machine with the
same numbers (its tokens/s columns then say little; the benchmarks measure speed). The
learning rate is constant, so each run's validation curve (every --val-every steps) is
the curve a shorter budget would have given: the plot and the extrapolation use it.

--spread-seeds reruns the equal_params points of the first cell with other seeds: the
spread a difference must exceed. --peer trains one point with PyTorch's nn.LSTM on the
same flags (studies/lm_torch.py, in its own process).

Rows are appended to --results (JSON) as each point finishes, keyed by everything that
defines it; a rerun of the same command skips finished points, and a run interrupted
mid-point continues from its checkpoint in <results>_runs/. Flags after -- go to both
trainers.
"""

import argparse
import os
import sys

from studies import char_lm_report as report
from studies import lm as word_study  # the runner, results file and flag parsers

HERE = os.path.dirname(os.path.abspath(__file__))
SETUPS = ("equal_params", "equal_width")
CELLS = ("lstm", "gru")
# the character-level configuration; flags after -- override these
BASE = ["--level", "char", "--vocab", "200", "--vocab-text", "corpus", "--embed", "32",
        "--bptt", "100", "--batch-size", "32", "--dropout", "0", "--schedule", "constant",
        "--lr", "2e-3", "--clip", "1", "--chunks-per-call", "20", "--val-every", "60",
        "--val-reviews", "100", "--test-reviews", "400", "--eval-batch-size", "50",
        "--compile-cache", "off"]
OWN_FLAGS = word_study.OWN_FLAGS + ("--cell", "--residual", "--seed", "--level")


def _seeds(text):
  """Comma-separated seeds (integers >= 0); "" for none."""
  try:
    values = tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    values = (-1,)
  if any(v < 0 for v in values):
    raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
  return values


def parser():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              epilog=__doc__[__doc__.index("The character-level"):],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  ints, names = word_study._ints, word_study._names
  p.add_argument("--cells", type=names(CELLS), default=CELLS, help="lstm,gru (both)")
  p.add_argument("--setups", type=names(SETUPS), default=SETUPS, help="both")
  p.add_argument("--depths", type=ints, default=(1, 2, 3, 4, 6, 8), help="1,2,3,4,6,8")
  p.add_argument("--residual-from", type=word_study._positive, default=4,
                 help="depths from this one up have residual connections (4)")
  p.add_argument("--plain-too", type=_seeds, default=(4,),
                 help="residual depths also run without them, equal_params only (4; \"\": "
                      "none)")
  p.add_argument("--hidden", type=word_study._positive, default=256,
                 help="equal_params: match the stack of one layer this wide (256)")
  p.add_argument("--width", type=word_study._positive, default=128,
                 help="equal_width: every layer's width (128)")
  p.add_argument("--tokens", type=word_study._positive, default=2_000_000,
                 help="training characters per point (2,000,000)")
  p.add_argument("--seeds", type=_seeds, default=(0,), help="seeds of every point (0)")
  p.add_argument("--spread-seeds", type=_seeds, default=(1,),
                 help="more seeds for the first cell's equal_params points (1; \"\": none)")
  p.add_argument("--peer", default="lstm:2", metavar="CELL:DEPTH",
                 help="the equal_params point PyTorch also trains (lstm:2)")
  p.add_argument("--no-peer", action="store_true", help="no PyTorch row")
  p.add_argument("--results", default=os.path.join(HERE, "results", "char_lm", "study.json"),
                 help="the rows (studies/results/char_lm/study.json); plots beside it")
  p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
  p.add_argument("--table", action="store_true",
                 help="print the finished rows as Markdown, redraw the plots, and exit")
  return p


def matched_width(cell, depth, target, embed):
  """The integer width whose `depth`-layer stack's exact parameter count is nearest
  `target`: the count is quadratic in the width, so three exact counts give it whole."""
  import numpy as np
  counts = [report.stack_params(cell, depth, h, embed) for h in (1, 2, 3)]
  a, b, c = np.polyfit([1, 2, 3], counts, 2)
  root = (-b + (b * b - 4 * a * (c - target)) ** 0.5) / (2 * a)
  near = range(max(1, int(root) - 2), int(root) + 3)
  return min(near, key=lambda h: (abs(report.stack_params(cell, depth, h, embed) - target), h))


def plan(args, embed):
  """The points to run, in order: dicts of impl, cell, setup, depth, width, residual, seed
  and the stack's parameter count."""
  points = []
  for seed in args.seeds:
    for cell in args.cells:
      target = report.stack_params(cell, 1, args.hidden, embed)
      for setup in args.setups:
        for depth in args.depths:
          width = (args.width if setup == "equal_width"
                   else matched_width(cell, depth, target, embed))
          residual = depth >= args.residual_from
          variants = [residual] + ([False] if residual and depth in args.plain_too
                                   and setup == "equal_params" else [])
          count = report.stack_params(cell, depth, width, embed)
          points += [dict(impl="jax", cell=cell, setup=setup, depth=depth, width=width,
                          residual=r, seed=seed, stack_params=count) for r in variants]
  first = [dict(p, seed=s) for p in points if p["cell"] == args.cells[0]
           and p["setup"] == "equal_params" and p["seed"] == args.seeds[0]
           for s in args.spread_seeds if s not in args.seeds]
  peer = [] if args.no_peer else [dict(p, impl="torch") for p in points
                                  if f"{p['cell']}:{p['depth']}" == args.peer
                                  and p["setup"] == "equal_params" and not p["residual"]
                                  and p["seed"] == args.seeds[0]]
  # equal parameters first (every cell), then the first cell's other seeds and the peer,
  # then equal width: the core comparison is whole early if a session ends mid-study
  core = [p for p in points if p["setup"] == "equal_params"]
  return core + first + peer + [p for p in points if p not in core]


def point_flags(point):
  return ["--cell", point["cell"], "--hidden", ",".join([str(point["width"])] * point["depth"]),
          "--seed", str(point["seed"]), *(["--residual"] if point["residual"] else [])]


def run_point(args, point, base, results, runs):
  """Trains one point unless its row is there; False if it failed."""
  key = {**point, "tokens": args.tokens, "args": base}
  if word_study.find(results["rows"], key):
    return True
  name = "{impl}-{cell}-{depth}x{width}{r}-seed{seed}".format(
      **point, r="-res" if point["residual"] else "")
  flags = [*base, *point_flags(point), "--epochs", "1", "--limit-train-tokens",
           str(args.tokens)]
  metrics = word_study.run_trainer(point["impl"], flags, os.path.join(runs, name))
  if metrics is None:
    print(f"point {name} failed; relaunch the study to retry it", file=sys.stderr)
    return False
  results["rows"].append({**word_study.report.row(metrics), **point, "key": key})
  word_study.save_results(args.results, results)
  return True


def split_argv(argv):
  return (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])


def main(argv=None):
  ours, extra = split_argv(sys.argv[1:] if argv is None else list(argv))
  p = parser()
  args = p.parse_args(ours)
  own = [f for f in extra if f.split("=")[0] in OWN_FLAGS]
  if own:
    p.error(f"flags after --: {', '.join(own)} are set by the study per point; expected "
            f"none of {', '.join(OWN_FLAGS)}")
  base = BASE + extra  # a later flag wins
  from examples.lm import main as lm_main  # imports JAX: only to run the study
  _, cfg = lm_main.parse(base, default_out=False)  # the trainers' flags, checked first
  points = plan(args, cfg["embed"])
  if args.dry_run or args.table:
    for pt in points:
      print(pt)
  results = word_study.load_results(args.results)
  if args.table:
    print("\n".join(report.table(results["rows"])))
    report.plot(results["rows"], os.path.splitext(args.results)[0])
  if args.dry_run or args.table:
    return 0
  runs = os.path.splitext(args.results)[0] + "_runs"
  failed = [pt for pt in points if not run_point(args, pt, base, results, runs)]
  report.plot(results["rows"], os.path.splitext(args.results)[0])
  print(f"\n{len(results['rows'])} rows in {args.results}; plots beside it"
        + (f"; failed: {failed}" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
