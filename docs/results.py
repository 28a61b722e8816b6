"""Every results table of the docs, rendered from the committed result files (no JAX).

The docs site renders them at build time: a page holds `<!-- results:NAME -->` and the
mkdocs hook (docs/hooks.py) replaces it with `RENDERERS[NAME](root)`. The README holds
one small rendered block, between `<!-- results:summary -->` and
`<!-- /results:summary -->`, which this script writes and checks:

    python docs/results.py            # rewrite the README's block
    python docs/results.py --check    # exit 1 if it differs from the committed results

Every table names its source files and what they record of date, CPU, commit and tree
state; none holds a typed figure. tests/test_docs_claims.py checks the README's block and
that every marker of the docs renders.
"""

import argparse
import importlib.util
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))  # the checkout: `studies`, `examples`


def _script(path):
  """A script of the repository (benchmarks/ is not a package), imported from its file."""
  name = "_docs_" + pathlib.Path(path).stem
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    sys.modules[name] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  return sys.modules[name]


def _study(name):
  """studies.NAME (pure: no JAX), the checkout put back on the path if a tool took it off
  (mkdocstrings sets sys.path while it collects)."""
  if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
  return importlib.import_module(f"studies.{name}")


report = _script("benchmarks/report.py")  # the grid's tables

IMDB = "examples/imdb/results"
SEED_RUNS = ("seed_rnn", "seed_lstm", "seed_gru")
STRONG_RUNS = ("strong", "strong_seed1")
GRIDS = ("cpu-intel-peers", "cpu-intel-devices2", "cpu-2core")  # newest first
PEERS_GRID = "benchmarks/results/cpu-intel-peers.json"
TARGETS_GRID = "benchmarks/results/cpu-2core.json"
ALLOCATOR = "benchmarks/results/allocator.json"
KERAS_SEED = "benchmarks/results/keras-seed-cpu.json"
SCALING = "benchmarks/results/scaling-cpu.json"
GRADIENT_FLOW = "studies/results/gradient_flow/results.json"
DEPTH = "studies/results/depth/results.json"
CHAR_LM = "studies/results/char_lm/study.json"
OVERFIT = "studies/results/overfit"
# the fused CPU loop against the peers: widths at L = 2, depths at H = 128, the seed width
FUSED = ("benchmarks/results/cpu-amd-fused-widths.json", "benchmarks/results/cpu-amd-fused-depths.json")
CELL_NAMES = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
# Quoted, not measured here: the best validation accuracies published for the Keras seed
# model that the trainer's defaults reproduce (it published none for SimpleRNN).
KERAS_PUBLISHED = {"rnn": None, "lstm": 0.8402, "gru": 0.8382}
# The language-model studies: the command each committed file came from (its arguments
# are how studies/lm.py finds the rows of its points).
LM_STUDIES = {
    "first": (["--depths", "1,2,3", "--setups", "equal_width", "--train-tokens", "200000",
               "--epochs", "1"], ["--val-reviews", "1000", "--test-reviews", "2000"]),
    "short": (["--minutes", "2.5", "--depths", "1,2,4"],
              ["--val-reviews", "1000", "--test-reviews", "2000"]),
    "9min": (["--minutes", "9"], ["--val-reviews", "1000", "--test-reviews", "2000"]),
}


def _tree(clean):
  return {True: "clean tree", False: "tree with uncommitted changes"}.get(
      clean, "tree state not recorded")


def _provenance(prov):
  """Date, CPU, commit and tree state, as a provenance dict records them."""
  if not prov:
    return "provenance not recorded"
  usable = (f" ({prov.get('cpus_usable')} of {prov.get('cpu_count')} CPUs usable)"
            if prov.get("cpu_count") else "")
  return (f"{prov.get('utc')}, {prov.get('cpu') or 'CPU not recorded'}{usable}, "
          f"jax {prov.get('jax') or 'not recorded'}, commit "
          f"{(prov.get('git_commit') or 'not recorded')[:10]}, {_tree(prov.get('git_clean'))}")


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


# ------------------------------------------------------------------- the IMDB trainer

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
    prov = self.metrics.get("provenance")
    if not prov:
      return (f"provenance not recorded (written before metrics.json had it); it records "
              f"jax {self.metrics.get('jax')} on \"{self.metrics.get('device')}\"")
    return _provenance(prov)


def _runs(root, names):
  return [Run(root, n) for n in names]


def _sources(runs):
  """One line per distinct provenance statement."""
  lines = []
  for run in runs:
    same = [entry for entry in lines if entry[1] == run.source()]
    if same:
      same[0][0].append(run.dir)
    else:
      lines.append(([run.dir], run.source()))
  return [f"- {', '.join(f'`{d}`' for d in dirs)}: {text}" for dirs, text in lines]


def _model(run):
  return f"{CELL_NAMES[run.cfg['cell']]} {len(run.cfg['hidden'])} x {run.cfg['hidden'][0]}"


def strong_description(run):
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


def imdb_seed(root):
  runs = _runs(root, SEED_RUNS)
  rows = ["| cell | Keras seed: best val acc (published) | ours: best val acc (epoch) | "
          "ours: test acc, best-val params | ours: test acc, last epoch | s / epoch | "
          "compile s | data s | whole command s |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for run in runs:
    m, keras = run.metrics, KERAS_PUBLISHED.get(run.cfg["cell"])
    rows.append(
        f"| {CELL_NAMES[run.cfg['cell']]} (`--cell {run.cfg['cell']}`) | "
        f"{'not published' if keras is None else _acc(keras)} | "
        f"{_acc(m['best']['val_accuracy'])} ({m['best']['epoch']}) | "
        f"**{_acc(m['test']['accuracy'])}** | {_acc(m['test_last_epoch']['accuracy'])} | "
        f"{_range(run.epochs)} | {_or_missing(run.compile_s, '{:.1f}'.format)} | "
        f"{_or_missing(run.load_s, '{:.1f}'.format)} | "
        f"{_or_missing(run.wall_s, '{:.2f}'.format)} |")
  last = [r.metrics["history"][-1] for r in runs]
  return "\n".join(rows + [
      "",
      f"\"s / epoch\" counts the {last[0]['steps']} training steps and the validation pass "
      f"(as Keras does), not compilation (\"compile s\", ahead of time) or reading and "
      f"encoding the reviews (\"data s\"), both from train.log; \"whole command s\" is the "
      f"shell's timer around the whole command. Train accuracy at epoch {last[0]['epoch']}: "
      f"{_range([h['accuracy'] for h in last], '.3f')} (the curves show the overfitting). "
      f"Test accuracy is on the {int(runs[0].test_reviews or 0):,} test reviews. Sources:",
      "", *_sources(runs)])


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
  return "\n".join([strong_description(runs[0]) + ".", "", *rows, "",
                    "The whole command is imports, data, ahead-of-time compilation of every "
                    "bucket length's train and eval steps, the epochs with validation, and "
                    "the test pass. Sources:", "", *_sources(runs)])


def allocator(root):
  data = json.loads((root / ALLOCATOR).read_text())
  rows = ["| allocator setting | s / epoch | whole command s | minor page faults | kernel "
          "CPU s | user CPU s | test acc |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for name in ("without", "with"):
    r = data["runs"][name]
    rows.append(f"| {name} | {', '.join(f'{s:.0f}' for s in r['epoch_seconds'])} | "
                f"{r['wall_s']:.1f} | {r['minflt']:,} | {r['stime_s']:.1f} | "
                f"{r['utime_s']:.1f} | {_acc(r['test_accuracy'])} |")
  return "\n".join(rows + [
      "", f"Metrics identical with and without: {'yes' if data['same_metrics'] else 'no'}. "
      f"Source: `{ALLOCATOR}` (`{data.get('command')}`): "
      f"{_provenance(data.get('provenance'))}."])


def keras_seed(root, path=KERAS_SEED):
  tool = _script("benchmarks/tools/keras_seed.py")  # its own table
  data = json.loads((root / path).read_text())
  return tool.markdown(data).rstrip() + (
      f"\n\nSource: `{path}`: commit {data['commit'][:10]}, {_tree(data['clean_tree'])}.")


# ----------------------------------------------------------------- the benchmark grids

class Grid:
  """A committed benchmark grid, as report.py reads it, by (impl, cell, H, L)."""

  def __init__(self, root, path):
    self.rows, self.sources = report.load_rows([root / path])
    self.by = {(r["impl"], r["cell"], r["hidden"], r["depth"]): r for r in self.rows}
    self.points = sorted({report.point_key(r) for r in self.rows})
    self.ours = [i for i in report.impl_order(self.rows) if i.startswith("deeprnn_jax")]

  def ratio(self, a, b, point):
    ra, rb = self.by.get((a, *point)), self.by.get((b, *point))
    return ra["tokens_per_s"] / rb["tokens_per_s"] if ra and rb else None

  def best(self, peer, point):
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
            f"((max - min) / median)")


def peers(root):
  """Our training step against each peer's, per cell: the span over the grid's points."""
  grid = Grid(root, PEERS_GRID)
  plain = grid.ours[0]
  others = [i for i in report.impl_order(grid.rows) if not i.startswith("deeprnn_jax")]
  cells = sorted({p[0] for p in grid.points}, key=list(CELL_NAMES).index)
  lines = ["| cell | widths H | depths L | " + " | ".join(f"ours / {o}" for o in others)
           + " |", "| --- " * (3 + len(others)) + "|"]
  for cell in cells:
    pts = [p for p in grid.points if p[0] == cell]
    lines.append(f"| {cell.upper()} | {', '.join(str(h) for h in sorted({p[1] for p in pts}))}"
                 f" | {', '.join(str(d) for d in sorted({p[2] for p in pts}))} | "
                 + " | ".join(f"{grid.span(plain, o, cell)}x" for o in others) + " |")
  return "\n".join(lines + [
      "", f"Tokens per second of one training step over the peer's (> 1: ours is faster), "
      f"the span over the grid's points; every peer with its own defaults. Source: "
      f"{grid.source()}. These are rough figures: {grid.weak()}; the full table flags each "
      f"such point ([results](results/cpu-intel-peers.md))."])


def _target_points(grid):
  return [p for p in grid.points if p[0] in ("lstm", "gru")]


def bench_targets(root):
  """Issue 5's targets on the grid of 2026-11-27, ratios per point."""
  grid = Grid(root, TARGETS_GRID)
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

  cells = lambda cell, hidden, fn, ds: " / ".join(fn((cell, hidden, d)) for d in ds)
  rows = [f"| cell | H | vs Flax, L={' / '.join(map(str, depths))} | vs PyTorch, "
          f"L={' / '.join(map(str, deep))} | our MFU, L={' / '.join(map(str, depths))} |",
          "|---|---|---|---|---|"]
  for cell in ("lstm", "gru"):
    for hidden in sorted({p[1] for p in grid.points}):
      rows.append(f"| {cell.upper()} | {hidden} | {cells(cell, hidden, vs('flax'), depths)} | "
                  f"{cells(cell, hidden, vs('torch'), deep)} | "
                  f"{cells(cell, hidden, mfu, depths)} |")
  points = _target_points(grid)
  met = [p for p in points if (grid.best("flax", p) or 0) >= 1.25]
  ours = [r for r in grid.rows if r["impl"] in grid.ours and r["hidden"] == max(
      p[1] for p in points) and r["cell"] in ("lstm", "gru")]
  top = max(ours, key=lambda r: r["mfu"])
  return "\n".join([
      f"Source: {grid.source()}. Ratios are tokens/s over tokens/s of `{plain}`, the "
      f"better of our schedules (`{'`, `'.join(grid.ours[1:])}`) in brackets where it "
      f"differs. {grid.weak()[0].upper() + grid.weak()[1:]}, so single cells move by that "
      f"much between runs.", "", *rows, "",
      f"1.25x Flax at every LSTM and GRU point: met at {len(met)} of {len(points)} points. "
      f"MFU 60% at H={top['hidden']}: best {100 * top['mfu']:.0f}% ({top['cell'].upper()} "
      f"L={top['depth']})."])


def grid_page(root, name):
  """benchmarks/results/NAME.json's whole report, as benchmarks/report.py renders it, its
  plots linked where the docs publish them (docs/hooks.py)."""
  text = report.render([root / "benchmarks" / "results" / f"{name}.json"], name)[0]
  return re.sub(r"\]\(([\w.-]+\.png)\)", r"](../../figures/benchmarks/results/\1)", text)


def scaling(root):
  tool = _script("benchmarks/tools/scaling.py")  # its own tables
  data = json.loads((root / SCALING).read_text())
  prov = data.get("provenance") or {}
  return tool.tables(data["rows"], prov.get("cpu")).rstrip() + (
      f"\n\nSource: `{SCALING}` (`{prov.get('command')}`): {_provenance(prov)}.")


# ------------------------------------------------------------------------- the studies

def gradient_flow(root):
  """The gradient's norm at distances back from the loss, per cell and initialiser."""
  data = json.loads((root / GRADIENT_FLOW).read_text())
  c, s = data["config"], data["summary"]
  far = c["time"] - 1
  distances = [d for d in (1, 10, 50, 100, far)
               if str(d) in next(iter(s.values()))["top_layer_at_distance"]]
  lines = ["| stack | " + " | ".join(f"{d} steps back" for d in distances)
           + " | per step (over the last) |", "| --- " * (len(distances) + 2) + "|"]
  for name, row in s.items():
    norms = row["top_layer_at_distance"]
    cells = [f"{norms[str(d)]:.1e}" if norms.get(str(d)) is not None else "overflow"
             for d in distances]
    last = norms.get(str(distances[-1]))
    per = f"{last ** (1 / distances[-1]):.3f}" if last else "–"
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {per} |")
  clipped = [(k, r["global_norm"], r["clipped_global_norm"]) for k, r in s.items()
             if r.get("global_norm") is not None and r["global_norm"] > c["max_norm"]]
  text = "\n".join(lines + [
      "", f"||dLoss/dH_t|| of the top layer of {c['layers']}-layer stacks of width "
      f"{c['width']} over {c['time']} steps, the loss on the last step (norm 1 there), batch "
      f"{c['batch']}."])
  if clipped:
    text += (" Gradients above the clipping threshold, and after "
             f"`optax.clip_by_global_norm({c['max_norm']})`: " + "; ".join(
                 f"{k}: {g:.3g} -> {after:.3g}" for k, g, after in clipped) + ".")
  return text + (f" Source: `{GRADIENT_FLOW}`: {_provenance(data.get('provenance'))}.")


def _depth_data(root):
  return json.loads((root / DEPTH).read_text())


def depth_tables(root):
  depth_report = _study("depth_report")
  data = _depth_data(root)
  widths = sorted({r["width"] for r in data["rows"]})
  parts = []
  for width in widths:
    parts += [f"Test accuracy, width {width} (mean of the seeds):", "",
              depth_report.by_depth(data, width, "test_accuracy", 4), "",
              f"Seconds per epoch, width {width} (mean of the seeds):", "",
              depth_report.by_depth(data, width, "seconds_per_epoch", 1), ""]
  sessions = {s["cpu"] for s in data["sessions"]}
  dates = sorted(r["finished_utc"][:10] for r in data["rows"])
  return "\n".join(parts) + (f"\nSource: `{DEPTH}`: {len(data['rows'])} runs on "
                             f"{', '.join(sorted(sessions))}, {dates[0]} to {dates[-1]} (the "
                             f"settings and commits head the full table below).")


def depth_summary(root):
  depth_report = _study("depth_report")
  return depth_report.summary(_depth_data(root)) + f"\n\nSource: `{DEPTH}`."


def lm_table(root, name):
  study = _study("lm")
  args, base = LM_STUDIES[name]
  path = root / "studies" / "results" / "lm" / f"{name}.json"
  parsed = study.parser().parse_args([*args, "--results", str(path)])
  base = ["--vocab-text", "corpus", *base]
  results = study.load_results(path)
  lines = study.table(results, parsed, study.plan(parsed, 200), base)
  rows = [r for r in results["rows"]]
  cpus = sorted({f"{r['cpu']} ({r['cpus_usable']} CPUs usable)" for r in rows if r.get("cpu")})
  dates = sorted(r["utc"][:10] for r in rows if r.get("utc"))
  commits = sorted({(r.get("git_commit") or "")[:10] for r in rows if r.get("git_commit")})
  return "\n".join(lines) + (
      f"\n\nSource: `studies/results/lm/{name}.json` (`python -m studies.lm "
      f"{' '.join(args)} -- {' '.join(LM_STUDIES[name][1])}`): {'; '.join(cpus)}, "
      f"{dates[0]} to {dates[-1]}, commits {', '.join(commits)}.")


def _rows_source(rows, path, command):
  cpus = sorted({f"{r['cpu']} ({r['cpus_usable']} CPUs usable)" for r in rows if r.get("cpu")})
  dates = sorted(r["utc"][:10] for r in rows if r.get("utc"))
  commits = sorted({(r.get("git_commit") or "")[:10] for r in rows if r.get("git_commit")})
  return (f"Source: `{path}` (`{command}`): {len(rows)} runs on {'; '.join(cpus)}, "
          f"{dates[0]} to {dates[-1]}, commits {', '.join(commits)}.")


def char_lm(root):
  """The character-level depth study: a line per point, seeds merged."""
  report = _study("char_lm_report")
  rows = json.loads((root / CHAR_LM).read_text())["rows"]
  return "\n".join(report.table(rows)) + "\n\n" + _rows_source(
      rows, CHAR_LM, "python -m studies.char_lm") + (
      " bpc: bits per character (the mean NLL / ln 2); the crossover column extrapolates "
      "a fitted a + b n^-c of each validation curve (second half) to where the deeper "
      "stack's goes below depth 1's; tokens/s were measured beside other work.")


def overfit(root):
  """The overfitting study: train, validation and test accuracy by depth and data size."""
  report = _study("overfit_report")
  paths = sorted((root / OVERFIT).glob("train*.json"))
  rows = report.rows([str(p) for p in paths])
  sessions = [s for p in paths for s in json.loads(p.read_text())["sessions"]]
  where = "; ".join(sorted({f"{s['cpu']} ({s['cpus_usable']} CPUs usable), commit "
                            f"{(s['git_commit'] or '')[:10]}" for s in sessions}))
  dates = sorted(r["finished_utc"][:10] for r in rows)
  return "\n".join(report.table(rows)) + (
      f"\n\nMean ± half the range over the seeds. Source: `{OVERFIT}/train*.json` "
      f"(`python -m studies.overfit`): {len(rows)} runs on {where}, {dates[0]} to "
      f"{dates[-1]}.")


def _char_points(root):
  """{(impl, cell, setup, depth, width, residual): [test bpc of each seed]}."""
  rows = json.loads((root / CHAR_LM).read_text())["rows"]
  out = {}
  for r in rows:
    out.setdefault((r["impl"], r["cell"], r["setup"], r["depth"], r["width"], r["residual"]),
                   []).append(r["test_bits"])
  return out, rows


def _bpc(values):
  mean = sum(values) / len(values)
  if len(values) == 1:
    return f"{mean:.3f}"
  return f"{mean:.3f} (seeds {min(values):.3f}-{max(values):.3f})"


def char_best(root):
  points, _ = _char_points(root)
  mine = {k: v for k, v in points.items() if k[:3] == ("jax", "lstm", "equal_params")}
  mean = lambda v: sum(v) / len(v)
  one = next(v for k, v in mine.items() if k[3] == 1)
  best = min(mine.items(), key=lambda kv: mean(kv[1]))
  return (f"{mean(one):.3f} / {mean(best[1]):.3f} ({best[0][3]} x {best[0][4]}"
          f"{' residual' if best[0][5] else ''}; {len(mine)} depths)")


def char_when(root):
  _, rows = _char_points(root)
  return f"{rows[0]['cpu']}, {max(r['utc'][:10] for r in rows)}"


def depth_answer(root):
  """The studies' answer in a few generated lines: which depth won where, by how much,
  against the seeds' spread, what residual connections changed, where the gap grew."""
  points, rows = _char_points(root)
  lines = []
  for cell in ("lstm", "gru"):
    for setup in ("equal_params", "equal_width"):
      mine = {k: v for k, v in points.items() if k[:3] == ("jax", cell, setup)}
      one = [v for k, v in mine.items() if k[3] == 1]
      if not one or len(mine) < 2:
        continue
      best = min(mine.items(), key=lambda kv: sum(kv[1]) / len(kv[1]))
      name = f"{best[0][3]} x {best[0][4]}{' residual' if best[0][5] else ''}"
      lines.append((f"characters, {cell.upper()}, {setup.replace('_', ' ')}",
                    f"depth 1 {_bpc(one[0])} test bpc; the best of {len(mine)} points "
                    f"{name}, {_bpc(best[1])}"))
      plain = {k[3]: v for k, v in mine.items() if k[3] >= 4 and not k[5]}
      res = {k[3]: v for k, v in mine.items() if k[3] >= 4 and k[5]}
      for d in sorted(set(plain) & set(res)):
        lines.append((f"characters, {cell.upper()}, {setup.replace('_', ' ')}, depth {d}",
                      f"with residual connections {_bpc(res[d])}, without {_bpc(plain[d])}"))
  peer = {k: v for k, v in points.items() if k[0] == "torch"}
  for k, v in peer.items():
    ours = points.get(("jax", *k[1:]))
    if ours:
      lines.append((f"characters, PyTorch's {k[1].upper()} {k[3]} x {k[4]}",
                    f"{_bpc(v)} test bpc on the same flags; ours {_bpc(ours)}"))
  overfit_rows = _study("overfit_report").rows(
      [str(p) for p in sorted((root / OVERFIT).glob("train*.json"))])
  gaps, chance = {}, {}
  for r in overfit_rows:
    gaps.setdefault((r["regularised"], r["depth"], r["n_train"]), []).append(r["gap"])
    if r["best_val_accuracy"] < 0.6:  # never left chance: a failure to train, not a fit
      chance[(r["regularised"], r["depth"], r["n_train"])] = chance.get(
          (r["regularised"], r["depth"], r["n_train"]), 0) + 1
  sizes = sorted({k[2] for k in gaps})
  for reg in (False, True):
    for d in sorted({k[1] for k in gaps}):
      vals = [sum(gaps[(reg, d, n)]) / len(gaps[(reg, d, n)]) for n in sizes if (reg, d, n) in gaps]
      if vals:
        lines.append((f"IMDB classifier, depth {d}{', dropout' if reg else ''}",
                      f"train-validation gap {' -> '.join(f'{v:.3f}' for v in vals)} over "
                      f"{', '.join(f'{n:,}' for n in sizes)} training reviews"
                     + "".join(f"; at {n:,}, {chance[(reg, d, n)]} of {len(gaps[(reg, d, n)])} "
                               f"seeds never left chance" for n in sizes if (reg, d, n) in chance)))
  cost = {(r["impl"], r["cell"], r["depth"]): r for r in report.load_rows([root / FUSED[1]])[0]
          if r["hidden"] == 128}
  for cell in ("lstm", "gru"):
    depths = sorted(d for i, c, d in cost if i == "deeprnn_jax[time_loop=auto]" and c == cell)
    if depths:
      per = [cost[("deeprnn_jax[time_loop=auto]", cell, d)] for d in depths]
      lines.append((f"cost of depth, {cell.upper()} width 128 training step (B = 64, T = 100)",
                    "; ".join(f"L = {d}: {1e3 * r['median_step_s']:.0f} ms, "
                              f"{r['params']:,} params" for d, r in zip(depths, per))))
  table = ["| question | measured |", "| --- | --- |"] + [f"| {q} | {a} |" for q, a in lines]
  dates = sorted(r["utc"][:10] for r in rows) + sorted(r["finished_utc"][:10] for r in overfit_rows)
  return "\n".join(table) + (
      f"\n\nSource: `{CHAR_LM}`, `{OVERFIT}/train*.json` ({len(rows)} and "
      f"{len(overfit_rows)} runs) and `{FUSED[1]}`, on {rows[0]['cpu']}, {dates[0]} to "
      f"{dates[-1]}.")


def fused_span(root, peer, cell):
  """ours (auto) / `peer` over the fused grid's points from H = 64 up, as "a-bx"."""
  rows, _ = report.load_rows([root / p for p in FUSED])
  by = {(r["impl"], r["cell"], r["hidden"], r["depth"]): r for r in rows}
  ratios = [r["tokens_per_s"] / by[(peer, *k[1:])]["tokens_per_s"]
            for k, r in by.items() if k[0] == "deeprnn_jax[time_loop=auto]" and k[1] == cell
            and k[2] >= 64 and (peer, *k[1:]) in by]
  return _range(ratios, ".2f") + "x"


def fused_when(root):
  _, sources = report.load_rows([root / FUSED[0]])
  return f"{sources[0]['cpu']}, {str(sources[0]['datetime'])[:10]}"


def fused(root):
  """The fused CPU loop against the scan and the peers, each alone in its process."""
  rows, sources = report.load_rows([root / p for p in FUSED])
  by = {(r["impl"], r["cell"], r["hidden"], r["depth"]): r for r in rows}
  points = sorted({(r["cell"], r["hidden"], r["depth"]) for r in rows})
  ours = "deeprnn_jax[time_loop=auto]"
  ratio = lambda a, b, p: (f"{by[(a, *p)]['tokens_per_s'] / by[(b, *p)]['tokens_per_s']:.2f}x"
                           if (a, *p) in by and (b, *p) in by else "-")
  lines = ["| cell | H | L | ours, ms / step | / PyTorch | / Flax | / our scan |",
           "| --- " * 7 + "|"]
  for p in points:
    if (ours, *p) not in by:
      continue
    lines.append(f"| {p[0].upper()} | {p[1]} | {p[2]} | "
                 f"{1e3 * by[(ours, *p)]['median_step_s']:.1f} | {ratio(ours, 'torch', p)} | "
                 f"{ratio(ours, 'flax', p)} | {ratio(ours, 'deeprnn_jax', p)} |")
  return "\n".join(lines) + (
      "\n\nTokens per second of one training step (B = 64, T = 100, F = 32, Adam, "
      "clipping) over each other's; > 1: ours with `time_loop=\"auto\"` is faster. Every "
      "impl measured alone in a process of its own, back to back in one command, each with "
      "the trainers' allocator setting. Source: "
      + "; ".join(f"`{p}`" for p in FUSED) + ": " + report.source_line(sources[0]) + ".")


# ------------------------------------------------------------------- the README summary

def summary(root):
  """The README's rows, each linking to the page with the details."""
  seed = {r.cfg["cell"]: r for r in _runs(root, SEED_RUNS)}
  strong = Run(root, "strong")
  grid = Grid(root, PEERS_GRID)
  lm = study_row(root)
  lstm, gru = seed["lstm"], seed["gru"]
  when = lambda run: f"{run.metrics['provenance']['cpu']}, {run.metrics['provenance']['utc'][:10]}"
  src = grid.sources[0]
  grid_when = f"{src['cpu']}, {str(src['datetime'])[:10]}"
  rows = [
      "| result | figure | measured on | details |", "| --- | --- | --- | --- |",
      f"| IMDB, the Keras seed model (LSTM 2 x 5), test accuracy | {_acc(lstm.metrics['test']['accuracy'])} "
      f"(best validation {_acc(lstm.metrics['best']['val_accuracy'])}; Keras published "
      f"{_acc(KERAS_PUBLISHED['lstm'])}) | {when(lstm)} | [IMDB example](docs/examples/imdb.md) |",
      f"| IMDB, `--preset strong` (GRU 1 x 64), test accuracy and whole command | "
      f"{_acc(strong.metrics['test']['accuracy'])} in {_minutes(strong.wall_s)} | "
      f"{when(strong)} | [IMDB example](docs/examples/imdb.md) |",
      f"| training step, the scan, ours / Flax linen (LSTM; GRU) | {grid.span('deeprnn_jax', 'flax', 'lstm')}x; "
      f"{grid.span('deeprnn_jax', 'flax', 'gru')}x | {grid_when} | [performance](docs/performance/index.md) |",
      f"| training step, the scan, ours / PyTorch CPU in one process (LSTM; GRU) | {grid.span('deeprnn_jax', 'torch', 'lstm')}x; "
      f"{grid.span('deeprnn_jax', 'torch', 'gru')}x | {grid_when} | [performance](docs/performance/index.md) |",
      f"| training step, `time_loop=\"auto\"` (oneDNN), H >= 64, ours / PyTorch (LSTM; GRU) | "
      f"{fused_span(root, 'torch', 'lstm')}; {fused_span(root, 'torch', 'gru')} | "
      f"{fused_when(root)} | [performance](docs/performance/index.md) |",
      f"| training step, `time_loop=\"auto\"` (oneDNN), H >= 64, ours / Flax linen (LSTM; GRU) | "
      f"{fused_span(root, 'flax', 'lstm')}; {fused_span(root, 'flax', 'gru')} | "
      f"{fused_when(root)} | [performance](docs/performance/index.md) |",
      f"| characters, LSTM at equal parameters, test bits per character: depth 1 / the best "
      f"depth | {char_best(root)} | {char_when(root)} | [depth on characters](docs/studies/char-depth.md) |",
      f"| language model, 1 x 200 LSTM, test perplexity ours / PyTorch's | {lm['ours']:.1f} / "
      f"{lm['torch']:.1f} | {lm['cpu']}, {lm['date']} | [language-model study](docs/studies/language-model.md) |",
  ]
  return "\n".join(rows)


def study_row(root):
  """The 9-minute language-model study's one-layer point, both implementations."""
  study = _study("lm")
  args, base = LM_STUDIES["9min"]
  path = root / "studies" / "results" / "lm" / "9min.json"
  parsed = study.parser().parse_args([*args, "--results", str(path)])
  found = study.point_rows(study.load_results(path), parsed, (200,),
                           ["--vocab-text", "corpus", *base])
  return {"ours": found["jax"]["test_perplexity"], "torch": found["torch"]["test_perplexity"],
          "cpu": found["jax"]["cpu"], "date": found["jax"]["utc"][:10]}


RENDERERS = {
    "summary": summary,
    "imdb-seed": imdb_seed, "imdb-strong": imdb_strong, "allocator": allocator,
    "keras-seed": keras_seed,
    "keras-seed-caches": lambda root: keras_seed(root, "benchmarks/results/keras-seed-cpu-caches.json"),
    "peers": peers, "bench-targets": bench_targets,
    "scaling": scaling, "gradient-flow": gradient_flow, "depth-tables": depth_tables,
    "depth-summary": depth_summary, "char-lm": char_lm, "overfit": overfit, "fused": fused,
    "depth-answer": depth_answer,
    **{f"lm-{name}": (lambda root, name=name: lm_table(root, name)) for name in LM_STUDIES},
    **{f"grid-{name}": (lambda root, name=name: grid_page(root, name)) for name in GRIDS},
}
MARKER = re.compile(r"^<!-- results:([\w-]+) -->$", re.M)  # alone on its line
README_BLOCK = re.compile(r"(<!-- results:summary -->\n)(.*?)(<!-- /results:summary -->)", re.S)


def render_markers(text, root=ROOT):
  """`text` (a docs page) with every `<!-- results:NAME -->` replaced by its rendering;
  ValueError for an unknown NAME."""
  def one(match):
    if match.group(1) not in RENDERERS:
      raise ValueError(f"unknown results marker {match.group(1)!r}")
    return RENDERERS[match.group(1)](root).rstrip("\n")
  return MARKER.sub(one, text)


def readme(text, root=ROOT):
  """The README with its summary block re-rendered; ValueError if the block is missing."""
  if len(README_BLOCK.findall(text)) != 1:
    raise ValueError("README.md: expected one <!-- results:summary --> ... "
                     "<!-- /results:summary --> block")
  return README_BLOCK.sub(lambda m: m.group(1) + summary(root) + "\n" + m.group(3), text)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if the README's block differs")
  parser.add_argument("--root", type=pathlib.Path, default=ROOT, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  path = args.root / "README.md"
  text = path.read_text()
  try:
    new = readme(text, args.root)
  except ValueError as e:
    print(f"results: {e}", file=sys.stderr)
    return 1
  if args.check:
    if new != text:
      print("results: README.md's summary block differs from what docs/results.py renders "
            "from the committed results; run python docs/results.py", file=sys.stderr)
      return 1
    return 0
  if new != text:
    path.write_text(new)
    print("results: rewrote README.md's summary block")
  return 0


if __name__ == "__main__":
  sys.exit(main())
