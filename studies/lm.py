"""When does depth pay? Our stacked LSTM language model at depths 1-4, and the PyTorch peer.

    python -m studies.lm --minutes 10                  # the whole study
    python -m studies.lm --minutes 10 -- --dropout 0.3 --vocab 20000
    python -m studies.lm --depths 1,2 --train-tokens 4000 --epochs 1 \\
        --results /tmp/smoke.json -- --vocab 500 --val-reviews 10 --test-reviews 10

Two configurations per depth L (--setups):
  equal_width   L layers of --hidden units each;
  equal_params  L layers of the width H_L whose LSTM stack has about as many parameters as
                --match-depth layers of --hidden: H_L is the integer width minimising
                |P(L, H) - P(match_depth, hidden)|, P(L, H) = 4H(E + H + 1) + (L - 1) 4H(2H + 1)
                being the stack's count (input kernel, recurrent kernel and one bias per
                layer; E = --embed). Only the recurrent stack, the part depth changes, is
                matched: the embedding and the softmax, which the vocabulary dominates, are
                not (every row reports the model's total "params").
Both implementations (--impls) run every point: `python -m examples.lm.main` (impl "jax")
and `python -m studies.lm_torch` (impl "torch"), as separate processes, with the same flags.

Size: with --minutes M (the default mode), each configuration is first timed by a short
run of our implementation (two epochs of --probe-tokens; the second epoch's speed
counts, as the first includes the warm-up), and then trained on the number of tokens it
processes in about M minutes of training over --epochs epochs (validation, loading and
compilation come on top): deeper or wider models see fewer tokens, as under a fixed
compute budget. Both implementations get that same token budget, so their perplexities
compare on equal data and their speeds are the tokens/s column. With --train-tokens N,
every point trains on the first N tokens instead (equal data throughout). The
vocabulary is counted over the whole training split (--vocab-text corpus, unless given
after --) so that runs of different lengths share it and their perplexities compare.

Each finished point appends a row to --results (a JSON file: {"rows": [...], "probes":
[...]}): impl, depth, hidden, params, val_perplexity, test_perplexity,
seconds_per_epoch, tokens_per_s, epochs, tokens_per_epoch, cpu, jax and torch versions, git
commit, and the point's key. A point whose key is already there is skipped, so the
study continues where it stopped when relaunched with the same flags, across sessions;
an interrupted point of ours continues from its checkpoint in --runs. The plot
(--results with .png) shows test perplexity and tokens/s against depth for each
configuration and implementation. Measure on a quiet machine: the tokens/s of a busy
one say little.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys

from examples.lm import report  # no JAX: the docs render this study's tables

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)  # where `python -m` finds examples and studies
SETUPS = ("equal_width", "equal_params")
IMPLS = {"jax": "examples.lm.main", "torch": "studies.lm_torch"}
OWN_FLAGS = ("--hidden", "--layers", "--epochs", "--limit-train-tokens", "--out", "--resume",
             "--sample")


def stack_params(depth, width, embed):
  """P(L, H): parameters of an LSTM stack of `depth` layers of `width` over `embed` inputs
  (one bias per layer, as ours; PyTorch's second bias adds 4H per layer)."""
  return 4 * width * (embed + width + 1) + (depth - 1) * 4 * width * (2 * width + 1)


def matched_width(depth, target, embed):
  """The integer width whose `depth`-layer stack has the count nearest `target`."""
  return min(range(1, 4 * int(target ** 0.5) + 2),
             key=lambda h: (abs(stack_params(depth, h, embed) - target), h))


def plan(args, embed):
  """[(widths, [setups])]: the configurations to run, each once."""
  target = stack_params(args.match_depth, args.hidden, embed)
  points = {}
  for depth in args.depths:
    for setup in args.setups:
      width = args.hidden if setup == "equal_width" else matched_width(depth, target, embed)
      points.setdefault((width,) * depth, []).append(setup)
  return list(points.items())


def _ints(text):
  try:
    values = tuple(int(v) for v in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
  if min(values) < 1:
    raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
  return values


def _positive(text):
  values = _ints(text)
  if len(values) != 1:
    raise argparse.ArgumentTypeError(f"expected one positive integer, got {text!r}")
  return values[0]


def _names(choices):
  def parse(text):
    names = tuple(text.split(","))
    wrong = [n for n in names if n not in choices]
    if wrong:
      raise argparse.ArgumentTypeError(f"expected names from {','.join(choices)}, got {text!r}")
    return names

  return parse


def parser():
  p = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0] + " Flags after -- go to both trainers.",
      epilog=__doc__[__doc__.index("Two configurations"):],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--depths", type=_ints, default=(1, 2, 3, 4), help="depths (1,2,3,4)")
  p.add_argument("--hidden", type=_positive, default=200,
                 help="the equal_width width, and the width of the equal_params reference (200)")
  p.add_argument("--match-depth", type=_positive, default=1,
                 help="equal_params: match the stack of this many layers of --hidden (1)")
  p.add_argument("--setups", type=_names(SETUPS), default=SETUPS,
                 help="equal_width,equal_params (both)")
  p.add_argument("--impls", type=_names(tuple(IMPLS)), default=tuple(IMPLS),
                 help="jax,torch (both)")
  size = p.add_mutually_exclusive_group()
  size.add_argument("--minutes", type=float, default=10.0,
                    help="about this many minutes of training per point, sized by a probe (10)")
  size.add_argument("--train-tokens", type=_positive,
                    help="train every point on the first N tokens instead (no probe)")
  p.add_argument("--epochs", type=_positive, default=3, help="epochs per point (3)")
  p.add_argument("--probe-tokens", type=_positive, default=50000,
                 help="tokens of the two-epoch timing run of each configuration (50000)")
  p.add_argument("--results", default=os.path.join(HERE, "results", "lm", "study.json"),
                 help="the JSON file of rows (studies/results/lm/study.json); the plot "
                      "goes beside it, as .png")
  p.add_argument("--runs", help="where each point's --out goes (default: beside --results, "
                                "in <results name>_runs/)")
  p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
  p.add_argument("--table", action="store_true",
                 help="print the finished points of this study (same flags) as a Markdown "
                      "table, ours beside the peer, redraw its plot, and exit")
  return p


def load_results(path):
  if not os.path.exists(path):
    return {"rows": [], "probes": []}
  with open(path) as f:
    return json.load(f)


def save_results(path, results):
  """Rewrites the file whole, through a temporary one: a kill never leaves half a file."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=1)
  os.replace(path + ".tmp", path)


def find(entries, key):
  return next((e for e in entries if e["key"] == key), None)


def run_trainer(impl, flags, out):
  """Runs one trainer process (its output shown as it comes); its metrics, None if it
  failed."""
  command = [sys.executable, "-m", IMPLS[impl], *flags, "--out", os.path.abspath(out)]
  print(f"\n$ {shlex.join(command)}", flush=True)
  if subprocess.run(command, cwd=CHECKOUT).returncode != 0:
    return None
  with open(os.path.join(out, "metrics.json")) as f:
    metrics = json.load(f)
  return metrics if metrics.get("test") else None


def width_flags(widths):
  return ["--hidden", ",".join(map(str, widths))]


def budget(args, widths, base, results, runs):
  """The training tokens of a configuration: --train-tokens, or what our implementation
  trains on in --minutes (from a timing run, remembered in the results)."""
  if args.train_tokens:
    return args.train_tokens
  key = {"hidden": list(widths), "probe_tokens": args.probe_tokens, "args": base}
  probe = find(results["probes"], key)
  if probe is None:
    out = os.path.join(runs, "probe-" + "x".join(map(str, widths)))
    if os.path.isdir(out):  # a fresh timing each time, never a continued one
      import shutil
      shutil.rmtree(out)
    # two epochs: the second one's speed, as the first includes the warm-up
    flags = [*base, *width_flags(widths), "--epochs", "2", "--limit-train-tokens",
             str(args.probe_tokens), "--val-reviews", "50", "--test-reviews", "50"]
    metrics = run_trainer("jax", flags, out)
    if metrics is None:
      raise RuntimeError(f"the timing run of --hidden {widths} failed; see its output above")
    probe = {"key": key, "tokens_per_s": metrics["history"][-1]["tokens_per_s"]}
    results["probes"].append(probe)
    save_results(args.results, results)
  return max(1, int(probe["tokens_per_s"] * args.minutes * 60 / args.epochs))


def run_point(args, impl, widths, setups, base, results, runs):
  """Trains one point unless its row is there; False if it failed."""
  size = {"tokens": args.train_tokens} if args.train_tokens else {"minutes": args.minutes}
  key = {"impl": impl, "hidden": list(widths), "size": size, "epochs": args.epochs,
         "args": base}
  if find(results["rows"], key):
    print(f"skipping {impl} {widths}: already in {args.results}")
    return True
  tokens = budget(args, widths, base, results, runs)
  name = f"{impl}-{'x'.join(map(str, widths))}-" + "-".join(f"{k}{v}" for k, v in size.items())
  flags = [*base, *width_flags(widths), "--epochs", str(args.epochs),
           "--limit-train-tokens", str(tokens)]
  metrics = run_trainer(impl, flags, os.path.join(runs, name))
  if metrics is None:
    print(f"point {impl} {widths} failed; relaunch the study to retry it", file=sys.stderr)
    return False
  results["rows"].append({**report.row(metrics), "setups": setups, "key": key})
  save_results(args.results, results)
  return True


def point_rows(results, args, widths, base):
  """The rows of one configuration, by impl (missing impls left out)."""
  size = {"tokens": args.train_tokens} if args.train_tokens else {"minutes": args.minutes}
  found = {impl: find(results["rows"], {"impl": impl, "hidden": list(widths), "size": size,
                                         "epochs": args.epochs, "args": base})
           for impl in IMPLS}
  return {impl: r for impl, r in found.items() if r}


def table(results, args, points, base):
  """Markdown lines: one per configuration with both impls' rows, equal width first."""
  lines = ["| depth x width | setup | tokens per epoch | seconds per epoch (ours) | "
           "ours: test ppl | PyTorch: test ppl | ours: tokens/s | PyTorch: tokens/s | "
           "ours / PyTorch speed |", "| --- " * 9 + "|"]
  names = {("equal_width",): "equal width", ("equal_params",): "equal LSTM params"}
  order = sorted(points, key=lambda p: ("equal_width" not in p[1], len(p[0])))
  for widths, setups in order:
    found = point_rows(results, args, widths, base)
    if set(found) != set(IMPLS):
      continue
    ours, peer = found["jax"], found["torch"]
    lines.append(
        f"| {len(widths)} x {widths[0]} | {names.get(tuple(setups), 'both')} | "
        f"{ours['tokens_per_epoch']:,} | {ours['seconds_per_epoch']:.0f} | "
        f"{ours['test_perplexity']:.1f} | {peer['test_perplexity']:.1f} | "
        f"{ours['tokens_per_s']:,.0f} | {peer['tokens_per_s']:,.0f} | "
        f"{ours['tokens_per_s'] / peer['tokens_per_s']:.2f}x |")
  return lines


def plot(path, results, args, points, base):
  """Test perplexity and tokens/s against depth, one line per configuration and impl."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  size = {"tokens": args.train_tokens} if args.train_tokens else {"minutes": args.minutes}
  for setup, style in zip(SETUPS, ("-", "--")):
    for impl, marker in zip(IMPLS, ("o", "s")):
      found = [point_rows(results, args, w, base).get(impl)
               for w, setups in points if setup in setups]
      found = sorted((r for r in found if r), key=lambda r: r["depth"])
      if not found:
        continue
      depths = [r["depth"] for r in found]
      for ax, column in zip(axes, ("test_perplexity", "tokens_per_s")):
        ax.plot(depths, [r[column] for r in found], style, marker=marker,
                label=f"{impl}, {setup.replace('_', ' ')}")
  for ax, title in zip(axes, ("test perplexity", "training tokens/s")):
    ax.set_xlabel("depth (LSTM layers)")
    ax.set_title(title)
    ax.set_xticks(sorted(args.depths))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(f"IMDB LM, width {args.hidden} / matched to depth {args.match_depth}; "
               f"{', '.join(f'{k} {v}' for k, v in size.items())}, {args.epochs} epochs",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  ours, base = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
      else (argv, [])
  p = parser()
  args = p.parse_args(ours)
  if not args.minutes > 0:
    p.error(f"--minutes: expected a positive number, got {args.minutes}")
  own = [f for f in base if f.split("=")[0] in OWN_FLAGS]
  if own:
    p.error(f"flags after --: {', '.join(own)} are set by the study per point; expected "
            f"none of {', '.join(OWN_FLAGS)}")
  base = ["--vocab-text", "corpus", *base]  # after --, --vocab-text train overrides this
  from examples.lm import main as lm_main  # imports JAX: only to run the study
  _, cfg = lm_main.parse(base, default_out=False)  # checks the trainers' flags before hours of work
  points = plan(args, cfg["embed"])
  runs = args.runs or os.path.splitext(args.results)[0] + "_runs"
  for widths, setups in points:
    print(f"depth {len(widths)}, width {widths[0]}: {', '.join(setups)}; LSTM stack "
          f"{stack_params(len(widths), widths[0], cfg['embed'])} parameters")
  if args.dry_run:
    return 0
  results = load_results(args.results)
  if args.table:  # and the plot, redrawn from the rows there are
    print("\n".join(table(results, args, points, base)))
    plot(os.path.splitext(args.results)[0] + ".png", results, args, points, base)
    return 0
  failed = [(impl, w) for w, setups in points for impl in args.impls
            if not run_point(args, impl, w, setups, base, results, runs)]
  plot(os.path.splitext(args.results)[0] + ".png", results, args, points, base)
  print(f"\n{len(results['rows'])} rows in {args.results}; plot beside it"
        + (f"; failed: {failed}" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
