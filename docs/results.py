"""Renders the result figures of the docs from committed result files, and checks them.

    python benchmarks/claims.py           # rewrite every marked block and report page
    python benchmarks/claims.py --check   # exit 1, naming file and block, if any differs

A block is the text between `<!-- claims:NAME -->` and `<!-- /claims:NAME -->` in one of
the Markdown files of BLOCKS; RENDERERS[NAME] writes it from the result files:
examples/imdb/results/*/metrics.json and train.log, examples/imdb/results/allocator.json,
benchmarks/results/*.json. Report pages (benchmarks/results/<name>.md) are checked whole
against `report.py`'s rendering of their JSON. Every block names its sources and what
they record of date, CPU, commit and tree state, and no more: files written before
`provenance` was added to metrics.json are said to have none.

Pure file reading (no JAX), so the check runs in the test suite in well under a second.
"""

import argparse
import json
import pathlib
import re
import statistics
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402 -- benchmarks/ is not a package

ROOT = HERE.parent
IMDB = "examples/imdb/results"
SEED_RUNS = ("seed_rnn", "seed_lstm", "seed_gru")
STRONG_RUNS = ("strong", "strong_seed1")
GRID = "benchmarks/results/cpu-2core.json"
COMPILE_DEPTH = "benchmarks/results/cpu-2core-compile-depth.json"
ALLOCATOR = f"{IMDB}/allocator.json"
CELL_NAMES = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
# Quoted, not measured here: the best validation accuracies published for the Keras seed
# model that the trainer's defaults reproduce (it published none for SimpleRNN).
KERAS_SEED = {"rnn": None, "lstm": 0.8402, "gru": 0.8382}
ALLOCATOR_COMMAND = "python examples/imdb/measure_allocator.py --preset strong"
COMPILE_COMMAND = f"python benchmarks/compile_depth.py --depth 2 3 4 16 --json {COMPILE_DEPTH}"


class Run:
  """One committed IMDB run: its metrics.json and what its train.log adds."""

  def __init__(self, root, name):
    self.name, self.dir = name, f"{IMDB}/{name}"
    self.metrics = json.loads((root / self.dir / "metrics.json").read_text())
    log = root / self.dir / "train.log"
    self.log = log.read_text() if log.is_file() else ""

  def _log(self, pattern):
    match = re.search(pattern, self.log, re.M)
    return float(match.group(1)) if match else None

  cfg = property(lambda self: self.metrics["config"])
  epochs = property(lambda self: [h["seconds"] for h in self.metrics["history"]])
  load_s = property(lambda self: self._log(r"vocabulary \d+ ids \(([\d.]+)s\)"))
  compile_s = property(lambda self: self._log(r"compiled in ([\d.]+)s"))
  wall_s = property(lambda self: self._log(r"^WALL ([\d.]+) s"))  # the shell's timer
  test_reviews = property(lambda self: self._log(r"^test \((\d+) reviews\)"))

  def source(self):
    """Where the numbers come from, as far as the files say."""
    prov = self.metrics.get("provenance")
    if not prov:
      return (f"`{self.dir}/metrics.json`, `train.log`: provenance not recorded (written "
              f"before metrics.json had it); they record jax {self.metrics.get('jax')} on "
              f"\"{self.metrics.get('device')}\"")
    return (f"`{self.dir}/metrics.json`, `train.log`: {prov.get('utc')}, "
            f"{prov.get('cpu') or 'CPU not recorded'} ({prov.get('cpus_usable')} of "
            f"{prov.get('cpu_count')} CPUs usable), jax {prov.get('jax')}, commit "
            f"{(prov.get('git_commit') or 'not recorded')[:10]}, {_tree(prov.get('git_clean'))}")


def _tree(clean):
  return {True: "clean tree", False: "tree with uncommitted changes"}.get(
      clean, "tree state not recorded")


def _acc(x):
  return f"{x:.4f}"


def _range(values, spec=".1f"):
  lo, hi = format(min(values), spec), format(max(values), spec)
  return lo if lo == hi else f"{lo}-{hi}"


def _minutes(seconds):
  whole = int(seconds + 0.5)  # half up, as a reader rounds 150.50 s
  return f"{whole // 60} min {whole % 60} s"


def _or_missing(value, fmt):
  return "not recorded" if value is None else fmt(value)


def _runs(root, names):
  return [Run(root, n) for n in names]


def _sources(runs):
  """One line per distinct provenance statement: old files share one."""
  lines = []
  for run in runs:
    line = run.source()
    common = line.split(": ", 1)[1]
    same = [l for l in lines if l[1] == common]
    if same:
      same[0][0].append(run.dir)
    else:
      lines.append(([run.dir], common))
  return [f"- {', '.join(f'`{d}`' for d in dirs)}: {text}" for dirs, text in lines]


def _model(run):
  cfg = run.cfg
  return f"{CELL_NAMES[cfg['cell']]} {len(cfg['hidden'])} x {cfg['hidden'][0]}"


def _strong_description(run):
  """The strong preset in words, from its recorded config."""
  c = run.cfg
  pooling = {"meanmax": "masked mean + max pooling of its outputs",
             "last": "the last valid output"}.get(c["pooling"], c["pooling"])
  return (f"`--preset strong` is a {len(c['hidden'])}-layer {CELL_NAMES[c['cell']]} of "
          f"{c['hidden'][0]} units over a {c['embed']}-wide embedding of the top "
          f"{c['vocab']:,} words and the last {c['maxlen']} tokens of each review, {pooling}, "
          f"dropout {c['dropout']}, Adam {c['lr']:g} with a {c['schedule']} schedule over "
          f"{c['epochs']} epochs, clipping at {c['clip']}, batch {c['batch_size']}, "
          f"{c['val_split']:.0%} of train held out, batches of similar-length reviews "
          f"(`--bucket {c['bucket']}`)")


def imdb_readme(root):
  seed, strong = _runs(root, SEED_RUNS), _runs(root, STRONG_RUNS)
  s0, s1 = strong
  rows = ["| model | Keras seed, best val acc (quoted) | ours, best val acc | ours, test acc "
          "| s / epoch |", "| --- | --- | --- | --- | --- |"]
  for run in seed:
    keras = KERAS_SEED.get(run.cfg["cell"])
    rows.append(f"| {_model(run)} (`--cell {run.cfg['cell']}`) | "
                f"{'not published' if keras is None else _acc(keras)} | "
                f"{_acc(run.metrics['best']['val_accuracy'])} | "
                f"{_acc(run.metrics['test']['accuracy'])} | {_range(run.epochs)} |")
  rows.append(f"| `--preset strong` ({_model(s0)}) | - | {_acc(s0.metrics['best']['val_accuracy'])} "
              f"| **{_acc(s0.metrics['test']['accuracy'])}** | {_range(s0.epochs, '.0f')} |")
  walls = [r.wall_s for r in seed if r.wall_s is not None]
  steps = sorted({h["steps"] for r in seed for h in r.metrics["history"]})
  text = [
      f"Results of the committed runs in [examples/imdb/results/](examples/imdb/results/) "
      f"(details in [examples/imdb/RESULTS.md](examples/imdb/RESULTS.md)); this paragraph "
      f"and the table are rendered from their metrics.json and train.log by "
      f"`python benchmarks/claims.py`. Test accuracy is on the full "
      f"{int(s0.test_reviews or 0):,}-review test split with the best-validation parameters.",
      "",
      *rows,
      "",
      f"Seconds per epoch count the {', '.join(map(str, steps))} (strong: "
      f"{s0.metrics['history'][0]['steps']}) training steps and the validation pass, not "
      f"compilation or data loading"
      + (f"; the whole seed command took {_range(walls, '.0f')} s." if walls else ".")
      + f" {_strong_description(s0)}: test accuracy **{_acc(s0.metrics['test']['accuracy'])}"
      f" in {_or_missing(s0.wall_s, _minutes)}** for the whole command (data, compilation, "
      f"{len(s0.epochs)} epochs, test). With `--seed 1`: test "
      f"{_acc(s1.metrics['test']['accuracy'])} in {_or_missing(s1.wall_s, _minutes)}. The "
      f"Keras column quotes the seed model's published figures; nothing else in it was "
      f"measured by Keras here.",
      "",
      "Where these numbers come from:",
      "",
      *_sources(seed + strong),
  ]
  return "\n".join(text)


def imdb_sources(root):
  runs = _runs(root, SEED_RUNS + STRONG_RUNS)
  return "\n".join(["Every figure in the tables below is rendered by `python "
                    "benchmarks/claims.py` from these files:", "", *_sources(runs)])


def imdb_seed(root):
  runs = _runs(root, SEED_RUNS)
  rows = ["| cell | Keras seed: best val acc (quoted) | ours: best val acc (epoch) | ours: "
          "test acc, best-val params | ours: test acc, last epoch | s / epoch | compile s | "
          "data s | whole command s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for run in runs:
    m, keras = run.metrics, KERAS_SEED.get(run.cfg["cell"])
    rows.append(
        f"| {CELL_NAMES[run.cfg['cell']]} (`--cell {run.cfg['cell']}`) | "
        f"{'not published' if keras is None else _acc(keras)} | "
        f"{_acc(m['best']['val_accuracy'])} ({m['best']['epoch']}) | "
        f"**{_acc(m['test']['accuracy'])}** | {_acc(m['test_last_epoch']['accuracy'])} | "
        f"{_range(run.epochs)} | {_or_missing(run.compile_s, '{:.1f}'.format)} | "
        f"{_or_missing(run.load_s, '{:.1f}'.format)} | "
        f"{_or_missing(run.wall_s, '{:.2f}'.format)} |")
  last = [r.metrics["history"][-1] for r in runs]
  best = ", ".join(f"{CELL_NAMES[r.cfg['cell']]} {r.metrics['best']['epoch']}" for r in runs)
  return "\n".join(rows + [
      "",
      f"- \"s / epoch\" counts the {last[0]['steps']} training steps and the validation "
      f"pass (as Keras does; metrics.json `history[].seconds`), not compilation (done ahead "
      f"of time: \"compile s\") or data loading (reading, tokenising and encoding the "
      f"reviews: \"data s\"), both from train.log; \"whole command s\" is the `WALL` line "
      f"of train.log, the shell's timer around the whole command.",
      f"- Best validation epoch: {best}; train accuracy at epoch {last[0]['epoch']}: "
      f"{_range([h['accuracy'] for h in last], '.3f')} (the curves show the overfitting).",
  ])


def imdb_strong(root):
  runs = _runs(root, STRONG_RUNS)
  rows = ["| run | best val acc (epoch) | test acc | whole command | s / epoch | data s | "
          "compile s |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for run in runs:
    m = run.metrics
    name = "`--preset strong`" + (f" `--seed {run.cfg['seed']}`" if run.cfg["seed"] else
                                  " (seed 0)")
    wall = _or_missing(run.wall_s, lambda s: f"**{_minutes(s)}** ({s:.2f} s)")
    rows.append(f"| {name} | {_acc(m['best']['val_accuracy'])} ({m['best']['epoch']}) | "
                f"**{_acc(m['test']['accuracy'])}** | {wall} | "
                f"{', '.join(f'{s:.0f}' for s in run.epochs)} | "
                f"{_or_missing(run.load_s, '{:.1f}'.format)} | "
                f"{_or_missing(run.compile_s, '{:.1f}'.format)} |")
  last_is_best = all(r.metrics["best"]["epoch"] == len(r.epochs) for r in runs)
  return "\n".join([_strong_description(runs[0]) + ".", "", *rows, "",
                    "The whole command (train.log's `WALL`) is imports, data, ahead-of-time "
                    "compilation of every bucket length's train and eval steps, the epochs "
                    "with validation, and the test pass" +
                    (" (the best epoch is the last in each run, so there is one test pass)."
                     if last_is_best else ".")])


def imdb_allocator(root):
  path = root / ALLOCATOR
  if not path.is_file():
    return (f"**Not measured in a committed run**: no committed run has the allocator "
            f"setting switched off, so its effect has no figure here. To measure it (both "
            f"settings, same command, page faults and kernel CPU time of each), on a quiet "
            f"machine: `{ALLOCATOR_COMMAND}` (about 6 minutes on this project's 2-core CPU), "
            f"then commit `{ALLOCATOR}` and run `python benchmarks/claims.py`.")
  data = json.loads(path.read_text())
  rows = ["| allocator setting | s / epoch | whole command s | minor page faults | kernel "
          "CPU s | user CPU s | test acc |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for name in ("without", "with"):
    r = data["runs"][name]
    rows.append(f"| {name} | {', '.join(f'{s:.0f}' for s in r['epoch_seconds'])} | "
                f"{r['wall_s']:.1f} | {r['minflt']:,} | {r['stime_s']:.1f} | "
                f"{r['utime_s']:.1f} | {_acc(r['test_accuracy'])} |")
  prov = data.get("provenance") or {}
  return "\n".join(rows + [
      "",
      f"Metrics identical with and without: {'yes' if data['same_metrics'] else 'no'}. "
      f"From `{ALLOCATOR}` (`{data.get('command')}`): {prov.get('utc')}, {prov.get('cpu')} "
      f"({prov.get('cpus_usable')} of {prov.get('cpu_count')} CPUs usable), commit "
      f"{(prov.get('git_commit') or 'not recorded')[:10]}, {_tree(prov.get('git_clean'))}."])


class Grid:
  """The committed benchmark grid, as report.py reads it, by (impl, cell, H, L)."""

  def __init__(self, root):
    self.path = root / GRID
    self.rows, self.sources = report.load_rows([self.path])
    self.by = {(r["impl"], r["cell"], r["hidden"], r["depth"]): r for r in self.rows}
    self.points = sorted({report.point_key(r) for r in self.rows})
    self.ours = [i for i in report.impl_order(self.rows) if i.startswith("deeprnn_jax")]

  def ratio(self, a, b, point):
    ra, rb = self.by.get((a, *point)), self.by.get((b, *point))
    return ra["tokens_per_s"] / rb["tokens_per_s"] if ra and rb else None

  def best(self, peer, point):
    """Our better schedule's ratio to `peer` at `point`."""
    ratios = [x for x in (self.ratio(o, peer, point) for o in self.ours) if x is not None]
    return max(ratios) if ratios else None

  def span(self, impl, peer, cell):
    values = [self.ratio(impl, peer, p) for p in self.points if p[0] == cell]
    return _range([v for v in values if v is not None], ".2f")

  def source(self):
    return report.source_line(self.sources[0])

  def weak(self):
    rounds = [r["rounds"] for r in self.rows if r.get("rounds") is not None]
    spreads = [r["spread"] for r in self.rows if r.get("spread") is not None]
    few = sum(x < report.FEW_ROUNDS for x in rounds)
    return (f"{few} of {len(rounds)} benchmarks had fewer than {report.FEW_ROUNDS} timed "
            f"rounds and one benchmark's rounds spread by up to {100 * max(spreads):.0f}% "
            f"((max - min) / median); the report flags each such point")


def _target_points(grid):
  return [p for p in grid.points if p[0] in ("lstm", "gru")]


def _flax_target(grid):
  """(met points, all points) of issue 5's >= 1.25x Flax, better schedule."""
  points = _target_points(grid)
  return [p for p in points if (grid.best("flax", p) or 0) >= 1.25], points


def _mfu256(grid):
  ours = [r for r in grid.rows if r["impl"] in grid.ours and r["hidden"] == 256
          and r["cell"] in ("lstm", "gru")]
  return max(ours, key=lambda r: r["mfu"])


def compile_depth_sentence(root):
  path = root / COMPILE_DEPTH
  if not path.is_file():
    return (f"Compile time against depth: [a table of 2026-11-27](benchmarks/results/"
            f"cpu-2core-compile-depth.md), copied from the console, with no raw results "
            f"committed, so this page quotes none of its figures; `{COMPILE_COMMAND}` "
            f"records one.")
  data = json.loads(path.read_text())
  lines = []
  for r in data["results"]:
    if r["impl"] == "deeprnn_jax":
      flax = next(f for f in data["results"] if f["impl"] == "flax" and f["cell"] == r["cell"]
                  and f["hidden"] == r["hidden"])
      lines.append(f"{r['cell']} H={r['hidden']}: {r['seconds'][0]:.2f} s at "
                   f"L={data['depths'][0]}, {r['seconds'][-1]:.2f} s at L={data['depths'][-1]} "
                   f"(Flax {flax['seconds'][0]:.2f} s to {flax['seconds'][-1]:.2f} s)")
  return ("Compile time against depth, best of " + str(data["repeats"]) + ": "
          + "; ".join(lines) + f" ([table](benchmarks/results/cpu-2core-compile-depth.md)).")


def compile_depth_page(data):
  """benchmarks/results/<name>-compile-depth.md from compile_depth.py's --json."""
  depths, prov = data["depths"], data.get("provenance") or {}
  head = ["cell", "H", "impl"] + [f"L={d}" for d in depths] + [f"L={depths[-1]} / L={depths[0]}"]
  lines = [f"# Compile time against depth (best of {data['repeats']}), {data['device']}", "",
           f"Training step of `benchmarks/workloads.py`, B={data['batch']}, T={data['time']}, "
           f"F={data['features']}; seconds of trace + lower + compile. Rendered by `python "
           f"benchmarks/claims.py` from `{COMPILE_DEPTH}`: {prov.get('utc')}, "
           f"{prov.get('cpu')} ({prov.get('cpus_usable')} of {prov.get('cpu_count')} CPUs "
           f"usable), commit {(prov.get('git_commit') or 'not recorded')[:10]}, "
           f"{_tree(prov.get('git_clean'))}, `{prov.get('command')}`.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in data["results"]:
    t = r["seconds"]
    lines.append("| " + " | ".join([r["cell"], str(r["hidden"]), r["impl"]]
                                   + [f"{x:.2f}" for x in t] + [f"{t[-1] / t[0]:.2f}"]) + " |")
  return "\n".join(lines) + "\n"


def bench_readme(root):
  grid = Grid(root)
  plain, wave = grid.ours[0], (grid.ours[1:] or [None])[0]
  met, points = _flax_target(grid)
  top = _mfu256(grid)
  text = (f"Results: [benchmarks/results/cpu-2core.md](benchmarks/results/cpu-2core.md), "
          f"rendered with this paragraph by `python benchmarks/claims.py` from "
          f"{grid.source()}; 1-min load average "
          f"{report._span([r.get('load_avg_1min') for r in grid.rows], '.1f')}. Against "
          f"Flax, deeprnn_jax runs the simple RNN {grid.span(plain, 'flax', 'rnn')}x as fast, "
          f"the LSTM {grid.span(plain, 'flax', 'lstm')}x and the GRU "
          f"{grid.span(plain, 'flax', 'gru')}x; against PyTorch's CPU kernels, the RNN "
          f"{grid.span(plain, 'torch', 'rnn')}x, the LSTM {grid.span(plain, 'torch', 'lstm')}x "
          f"and the GRU {grid.span(plain, 'torch', 'gru')}x.")
  if wave:
    best = max(grid.points, key=lambda p: grid.ratio(wave, "flax", p) or 0)
    text += (f" The wavefront schedule's best: {grid.ratio(wave, 'flax', best):.2f}x Flax "
             f"({best[0]}, H={best[1]}, L={best[2]}).")
  text += (f" Issue 5's target of 1.25x Flax at every LSTM and GRU point is met at "
           f"{len(met)} of {len(points)} (the better of our schedules); its 60% MFU at "
           f"H=256 is {'met' if top['mfu'] >= 0.6 else 'not met'} (best {100 * top['mfu']:.0f}%, "
           f"{top['cell']} L={top['depth']}). These are rough figures: {grid.weak()}.\n"
           + compile_depth_sentence(root))
  return text


def _cells(grid, cell, hidden, fn, depths):
  return " / ".join(fn((cell, hidden, d)) for d in depths)


def bench_targets(root):
  grid = Grid(root)
  plain = grid.ours[0]
  depths = sorted({p[2] for p in grid.points})
  deep = [d for d in depths if d >= 2]

  def vs(peer):
    def fmt(point):
      own, best = grid.ratio(plain, peer, point), grid.best(peer, point)
      if own is None:
        return "–"
      return f"{own:.2f}" + (f" ({best:.2f})" if f"{best:.2f}" != f"{own:.2f}" else "")
    return fmt

  def mfu(point):
    r = grid.by.get((plain, *point))
    return f"{100 * r['mfu']:.0f}%" if r else "–"

  rows = [f"| cell | H | vs Flax, L={' / '.join(map(str, depths))} | vs PyTorch, "
          f"L={' / '.join(map(str, deep))} | our MFU, L={' / '.join(map(str, depths))} |",
          "|---|---|---|---|---|"]
  for cell in ("lstm", "gru"):
    for hidden in sorted({p[1] for p in grid.points}):
      rows.append(f"| {cell.upper()} | {hidden} | {_cells(grid, cell, hidden, vs('flax'), depths)}"
                  f" | {_cells(grid, cell, hidden, vs('torch'), deep)} | "
                  f"{_cells(grid, cell, hidden, mfu, depths)} |")
  met, points = _flax_target(grid)
  rest = [grid.best("flax", p) for p in points if p not in met]
  torch_lines = []
  for cell in ("lstm", "gru"):
    pts = [p for p in points if p[0] == cell and p[2] >= 2]
    ok = [p for p in pts if (grid.best("torch", p) or 0) >= 1.0]
    torch_lines.append(f"{cell.upper()} at {len(ok)} of {len(pts)} points (better schedule "
                       f"{_range([grid.best('torch', p) for p in pts], '.2f')}x)")
  top = _mfu256(grid)
  torch256 = [r["mfu"] for r in grid.rows if r["impl"] == "torch" and r["hidden"] == 256
              and r["cell"] == "lstm"]
  return "\n".join([
      f"Rendered by `python benchmarks/claims.py` from {grid.source()}. Ratios are tokens/s "
      f"over tokens/s of `{plain}`, the better of our schedules in brackets where it "
      f"differs. {grid.weak()[0].upper() + grid.weak()[1:]}, so single cells move by that "
      f"much between runs.",
      "",
      *rows,
      "",
      f"1. >= 1.25x Flax at every LSTM and GRU point: **{'met' if not rest else 'not met'}**; "
      f"met at {len(met)} of {len(points)} points"
      + (f" ({', '.join(f'{c.upper()} {h} L={d}' for c, h, d in met)})" if met else "")
      + (f", elsewhere {_range(rest, '.2f')}x with the better schedule." if rest else ".")
      + f" >= 1.0x PyTorch at L >= 2: met for the " + "; the ".join(torch_lines) + ".",
      f"2. MFU >= 60% at H=256: **{'met' if top['mfu'] >= 0.6 else 'not met'}**; best "
      f"{100 * top['mfu']:.0f}% ({top['cell'].upper()} L={top['depth']}), PyTorch's LSTM "
      f"{_range([100 * m for m in torch256], '.0f')}%.",
  ])


GRADIENT_FLOW = "examples/figures/gradient_flow.json"


def _per_step(summary, name, distance):
  """The factor the top layer's gradient norm keeps per step back, over `distance` steps."""
  return summary[name]["top_layer_at_distance"][str(distance)] ** (1 / distance)


def gradient_flow(root):
  """The README's vanishing/exploding paragraph, from examples/gradient_flow.py's JSON."""
  data = json.loads((root / GRADIENT_FLOW).read_text())
  c, s = data["config"], data["summary"]
  far = c["time"] - 1
  top = lambda name, d: s[name]["top_layer_at_distance"][str(d)]
  explode = f"tanh RNN / orthogonal x{c['scales'][0]}"
  prov = data.get("provenance")
  source = (f"{prov['utc']}, {prov['cpu']}, commit {str(prov['git_commit'])[:10]}, "
            f"{_tree(prov['git_clean'])}" if prov else
            f"provenance not recorded; it records jax {data['jax']} on {data['device']}")
  return (
      f"`python examples/gradient_flow.py` (about 45 s) measures ||dLoss/dH_t^l|| with "
      f"`drnn.diagnostics.state_gradient_norms(model, params, xs, loss_fn)` for "
      f"{c['layers']}-layer, {c['time']}-step stacks with the loss on the last step (norm 1 "
      f"at the loss). With the default orthogonal recurrent initialiser the tanh RNN keeps "
      f"about {_per_step(s, 'tanh RNN / orthogonal', 50):.2f} of the gradient per step back "
      f"({top('tanh RNN / orthogonal', 50):.1e} after 50 steps), the GRU "
      f"{_per_step(s, 'GRU / orthogonal', 50):.2f} and the ReLU RNN "
      f"{_per_step(s, 'ReLU RNN / orthogonal', 50):.2f}, while the LSTM, whose forget bias of "
      f"1 keeps its cell state, keeps about {_per_step(s, 'LSTM / orthogonal', far):.3f} per "
      f"step and still has {top('LSTM / orthogonal', far):.1e} after {far} steps. Large "
      f"recurrent weights (the tanh RNN's kernel x {c['scales'][0]}) make the norm explode to "
      f"{top(explode, far):.0e} "
      f"at {far} steps back, and `optax.clip_by_global_norm({c['max_norm']})` scales the "
      f"update back to norm {s['tanh RNN / orthogonal']['clipped_global_norm']:g} "
      f"(rendered from `{GRADIENT_FLOW}`: {source}).\n")


RENDERERS = {
    "gradient-flow": gradient_flow,
    "imdb-readme": imdb_readme, "bench-readme": bench_readme,
    "imdb-sources": imdb_sources, "imdb-seed": imdb_seed, "imdb-strong": imdb_strong,
    "imdb-allocator": imdb_allocator, "bench-targets": bench_targets,
}
BLOCKS = {  # file: the blocks it must hold
    "README.md": ("imdb-readme", "bench-readme", "gradient-flow"),
    "examples/imdb/RESULTS.md": ("imdb-sources", "imdb-seed", "imdb-strong", "imdb-allocator"),
    "benchmarks/NOTES.md": ("bench-targets",),
}
BLOCK = re.compile(r"(<!-- claims:([\w-]+) -->\n)(.*?)(<!-- /claims:\2 -->)", re.S)


def render_file(text, root, path):
  """`text` with every block re-rendered; raises ValueError for an unknown, missing or
  unclosed block."""
  found = [m.group(2) for m in BLOCK.finditer(text)]
  opened = re.findall(r"<!-- claims:([\w-]+) -->", text)
  if sorted(found) != sorted(opened):
    raise ValueError(f"{path}: unclosed claims block(s): {sorted(set(opened) - set(found))}")
  for name in found:
    if name not in RENDERERS:
      raise ValueError(f"{path}: unknown claims block {name!r}")
  missing = [n for n in BLOCKS.get(path, ()) if n not in found]
  if missing:
    raise ValueError(f"{path}: claims block(s) {missing} are missing")
  return BLOCK.sub(lambda m: m.group(1) + RENDERERS[m.group(2)](root).rstrip("\n") + "\n"
                   + m.group(4), text)


def report_pages(root):
  """{page: a function rendering it} for each committed benchmark results file."""
  results = root / "benchmarks" / "results"
  pages = {p.with_suffix(".md"): (lambda p=p: report.render([p], p.stem)[0])
           for p in sorted(results.glob("*.json")) if report.is_grid_json(p)}
  depth = root / COMPILE_DEPTH
  if depth.is_file():  # until then the page is a historical note, not checked
    pages[depth.with_suffix(".md")] = lambda: compile_depth_page(json.loads(depth.read_text()))
  return pages


def differences(root):
  """(file, block) of everything committed that differs from its rendering."""
  out = []
  for path in BLOCKS:
    text = (root / path).read_text()
    new = render_file(text, root, path)
    if new != text:
      old_blocks = {m.group(2): m.group(3) for m in BLOCK.finditer(text)}
      new_blocks = {m.group(2): m.group(3) for m in BLOCK.finditer(new)}
      out += [(path, n) for n in new_blocks if new_blocks[n] != old_blocks.get(n)]
  for md, render in report_pages(root).items():
    if not md.is_file() or md.read_text() != render():
      out.append((str(md.relative_to(root)), "whole page"))
  return out


def write_all(root):
  for path in BLOCKS:
    text = (root / path).read_text()
    new = render_file(text, root, path)
    if new != text:
      (root / path).write_text(new)
      print(f"claims: rewrote {path}")
  for md, render in report_pages(root).items():
    text = render()
    if not md.is_file() or md.read_text() != text:
      md.write_text(text)
      print(f"claims: rewrote {md.relative_to(root)} (plots: python benchmarks/report.py)")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if any block or report page differs")
  parser.add_argument("--root", type=pathlib.Path, default=ROOT, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  try:
    if not args.check:
      write_all(args.root)
      return 0
    stale = differences(args.root)
  except ValueError as e:
    print(f"claims: {e}", file=sys.stderr)
    return 1
  for path, block in stale:
    print(f"claims: {path}: block {block!r} differs from what benchmarks/claims.py renders "
          f"from the committed results; run python benchmarks/claims.py", file=sys.stderr)
  return 1 if stale else 0


if __name__ == "__main__":
  sys.exit(main())
