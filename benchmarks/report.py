"""Markdown tables and PNG plots from the benchmark suite's pytest-benchmark JSON.

    python benchmarks/report.py                                  # every benchmarks/results/*.json
    python benchmarks/report.py benchmarks/results/cpu-2core.json
    python benchmarks/report.py a.json b.json --name merged      # one report from several runs
    python benchmarks/report.py --no-plots                       # Markdown only

For each input `<name>.json` it writes, next to it (or under `--out-dir`), `<name>.md`: one
row per cell, width and depth with tokens/s per impl, deeprnn_jax's ratio to each peer,
compile seconds, parameters and MFU, the fewest timed rounds and largest spread of each
point with flags where they are weak, and whether its impls ran back to back in one
session (said only when the files show it); and the plots `<name>-tokens.png`,
`<name>-compile.png`, `<name>-params.png`, `<name>-mfu.png` (against depth, one line per
impl, one panel per cell and width).
"""

import argparse
import datetime
import json
import math
import pathlib
import sys

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PEERS = ("flax", "torch", "keras")
PLOTS = {  # file suffix: (extra_info key, axis label, log scale)
    "tokens": ("tokens_per_s", "training tokens/s (higher is better)", True),
    "compile": ("compile_s", "trace + lower + compile, s", False),
    "params": ("params", "parameters", True),
    "mfu": ("mfu", "MFU vs 1024^3 float32 matmul rate", False),
}


def _short(value, _=None):
  """Tick labels: 2k, 40k, 1.5M, 0.3."""
  for scale, suffix in ((1e6, "M"), (1e3, "k")):
    if abs(value) >= scale:
      return f"{value / scale:g}{suffix}"
  return f"{value:g}"


def _short_minor(value, _=None):
  """Minor log ticks: only 2x and 5x a power of ten get a label."""
  if value <= 0:
    return ""
  lead = round(value / 10 ** math.floor(math.log10(value)))
  return _short(value) if lead in (2, 5) else ""


FEW_ROUNDS = 5  # fewer timed rounds than this: the median is a median of very few
WIDE_SPREAD = 0.25  # (max - min) / median above this: the rounds disagree by a quarter


def _session(data):
  """What identifies the pytest session that wrote a file: two files agreeing on all of
  it are one run copied, anything else is a different session."""
  cpu = (data.get("machine_info") or {}).get("cpu") or {}
  commit = data.get("commit_info") or {}
  return (data.get("datetime"), commit.get("id"), commit.get("dirty"),
          (data.get("machine_info") or {}).get("node"), cpu.get("brand_raw"))


def load_source(path, index):
  """One JSON file's provenance as pytest-benchmark records it (None where it did not)."""
  data = json.loads(pathlib.Path(path).read_text())
  machine = data.get("machine_info") or {}
  cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
  commit = data.get("commit_info") or {}
  return data, {"index": index, "file": pathlib.Path(path).name, "session": _session(data),
                "datetime": data.get("datetime"), "commit": commit.get("id"),
                "dirty": commit.get("dirty"), "cpu": cpu.get("brand_raw"),
                "cores": cpu.get("count"), "node": machine.get("node")}


def load_rows(paths):
  """extra_info of every benchmark in `paths`, later files replacing equal points, each
  row tagged with its file (`_source`), its position in that file (`_order`), its timed
  rounds and their spread; and the files' provenance."""
  rows, sources = {}, []
  for path in paths:
    data, source = load_source(path, len(sources))
    sources.append(source)
    for order, bench in enumerate(data.get("benchmarks", [])):
      info = dict(bench.get("extra_info") or {})
      if "tokens_per_s" not in info:
        continue  # not a training-step benchmark (or run with --benchmark-disable)
      stats = bench.get("stats") or {}
      info["rounds"] = stats.get("rounds", info.get("rounds"))
      if stats.get("median") and "step_times_s" not in info:  # else measured in its own process
        info["spread"] = (stats["max"] - stats["min"]) / stats["median"]
      if "step_times_s" in info:
        info["rounds"] = len(info["step_times_s"])
      info["_source"], info["_order"] = source["index"], order
      rows[(info["impl"], info["cell"], info["hidden"], info["depth"])] = info
  if not rows:
    raise SystemExit(f"report: no training-step benchmarks in {[str(p) for p in paths]}; "
                     f"run pytest benchmarks/ --benchmark-json=PATH (without "
                     f"--benchmark-disable) first")
  return list(rows.values()), sources


def point_key(row):
  return row["cell"], row["hidden"], row["depth"]


def ran_back_to_back(point_rows, sources):
  """True only when what the file shows proves it: every impl of the point comes from
  one session, and its benchmarks are consecutive in that file."""
  files = {r["_source"] for r in point_rows}
  if len({sources[i]["session"] for i in files}) != 1 or len(files) != 1:
    return False
  orders = sorted(r["_order"] for r in point_rows)
  return orders == list(range(orders[0], orders[0] + len(orders)))


def point_sessions(rows, sources):
  """{point: 'back to back' | 'one session, not consecutive' | 'N sessions'}."""
  by_point = {}
  for r in rows:
    by_point.setdefault(point_key(r), []).append(r)
  out = {}
  for point, group in by_point.items():
    sessions = {sources[r["_source"]]["session"] for r in group}
    if ran_back_to_back(group, sources):
      out[point] = "back to back"
    elif len(sessions) == 1:
      out[point] = "one session, not consecutive"
    else:
      out[point] = f"{len(sessions)} sessions"
  return out


def timing_flags(point_rows):
  """Why a point's timings are weak: too few rounds, rounds that disagree."""
  flags = []
  rounds = [r["rounds"] for r in point_rows if r.get("rounds") is not None]
  spreads = [r["spread"] for r in point_rows if r.get("spread") is not None]
  if rounds and min(rounds) < FEW_ROUNDS:
    flags.append(f"{min(rounds)} rounds")
  if spreads and max(spreads) > WIDE_SPREAD:
    flags.append(f"spread {100 * max(spreads):.0f}%")
  return flags


def _tree(dirty):
  return {True: "tree with uncommitted changes", False: "clean tree"}.get(
      dirty, "tree state not recorded")


def source_line(source):
  """A file's date, machine, commit and tree state, as the file records them."""
  cpu = source["cpu"] or "CPU not recorded"
  cores = f" ({source['cores']} cores)" if source["cores"] else ""
  commit = source["commit"][:10] if source["commit"] else "commit not recorded"
  when = source["datetime"]
  if when:
    when = datetime.datetime.fromisoformat(when).isoformat(timespec="seconds")
  return (f"`{source['file']}`: pytest-benchmark session of "
          f"{when or 'an unrecorded date'}, {cpu}{cores}, node "
          f"{source['node'] or 'not recorded'}, deeprnn_jax commit {commit}, "
          f"{_tree(source['dirty'])}")


def impl_order(rows):
  """deeprnn_jax (and its option sets) first, in order of appearance; then the peers."""
  seen = []
  for r in rows:
    if r["impl"] not in seen:
      seen.append(r["impl"])
  ours = [i for i in seen if i.startswith("deeprnn_jax")]
  return ours + [i for i in PEERS if i in seen] + [i for i in seen if i not in ours + list(PEERS)]


def _fmt(value, spec):
  return "–" if value is None else format(value, spec)


def _small(value, suffix=""):
  """One decimal below 10, none above: 0.4%, 12%."""
  return "–" if value is None else f"{value:.1f}{suffix}" if value < 10 else f"{value:,.0f}{suffix}"


def _span(values, spec):
  values = [v for v in values if v is not None]
  if not values:
    return "–"
  lo, hi = format(min(values), spec), format(max(values), spec)
  return lo if lo == hi else f"{lo}–{hi}"


def _widest_gap_s(rows):
  """The most seconds between the start dates of one point's benchmarks."""
  starts = {}
  for r in rows:
    starts.setdefault(point_key(r), []).append(datetime.datetime.fromisoformat(r["date"]))
  return max((max(d) - min(d)).total_seconds() for d in starts.values())


def session_lines(rows, sources):
  """What the files show about when the impls of each point ran, and nothing more."""
  kinds = point_sessions(rows, sources)
  n = len(kinds)
  together = sum(k == "back to back" for k in kinds.values())
  if together == n:
    return [f"- Every impl of each of the {n} points comes from one file of one session "
            f"and ran back to back there (consecutive benchmarks; the first and last impl "
            f"of a point started at most {_widest_gap_s(rows):.0f} s apart)."]
  mixed = n - together
  return [f"- {together} of {n} points ran back to back (one session, consecutive "
          f"benchmarks); at {mixed} the impls come from different sessions or were not "
          f"consecutive (the table's `session` column), so those ratios also compare "
          f"whatever changed between the runs."]


def timing_lines(rows):
  """Rounds and spreads over all benchmarks, with the thresholds the table flags."""
  rounds = sorted(r["rounds"] for r in rows if r.get("rounds") is not None)
  spreads = sorted(r["spread"] for r in rows if r.get("spread") is not None)
  lines = []
  if rounds:
    few = sum(x < FEW_ROUNDS for x in rounds)
    lines.append(f"- Timed rounds per benchmark: {rounds[0]}-{rounds[-1]}; {few} of "
                 f"{len(rounds)} benchmarks had fewer than {FEW_ROUNDS}.")
  if spreads:
    wide = sum(x > WIDE_SPREAD for x in spreads)
    lines.append(f"- Spread of a benchmark's timed rounds ((max - min) / median): median "
                 f"{100 * spreads[len(spreads) // 2]:.0f}%, largest {100 * spreads[-1]:.0f}%; "
                 f"{wide} of {len(spreads)} benchmarks above {100 * WIDE_SPREAD:.0f}%. The "
                 f"table's `flags` column names the points with fewer than {FEW_ROUNDS} "
                 f"rounds or a spread above {100 * WIDE_SPREAD:.0f}% in any impl: read "
                 f"their figures as rough.")
  return lines


def header(rows, sources, name):
  """The lines naming sources, device, date, sizes, matmul rate, load, timing quality."""
  first = rows[0]
  devices = sorted({f"{r['device']}" for r in rows})
  dates = sorted(r["date"] for r in rows)
  loads = [r.get("load_avg_1min") for r in rows]
  versions = first.get("versions") or {}
  used = sorted({r["_source"] for r in rows})
  lines = [
      f"# Training-step benchmark: {name}",
      "",
      "Generated by `python benchmarks/report.py` from the files named below; edit those "
      "or the script, not this page.",
      "",
      "One jitted training step of a sequence classifier (forward + backward + "
      "`clip_by_global_norm(1)` + Adam): inputs [B, T, F] -> a stack of L layers of width H "
      "-> last output -> dense(1) -> BCE. PyTorch runs eagerly "
      "(`nn.RNN/LSTM/GRU(num_layers=L)` + `clip_grad_norm_` + Adam).",
      "",
  ]
  lines += [f"- Source: {source_line(sources[i])}" for i in used]
  lines += [
      f"- Device: {'; '.join(devices)}",
      f"- Date: {dates[0][:16]} to {dates[-1][:16]}",
      f"- Sizes: B={first['batch']}, T={first['time']}, F={first['features']}; "
      f"tokens/s = B*T / median step time",
      f"- float32 matmul rate (1024^3, same session): "
      f"{_span([r['matmul_gflops'] for r in rows], '.1f')} GFLOP/s; MFU = analytic model "
      f"FLOPs per step (forward matmuls x 3) / step time / that rate",
      f"- Machine load (1-min load average at the start of each benchmark, the benchmark "
      f"itself included): {_span(loads, '.1f')}.",
  ]
  lines += session_lines(rows, sources) + timing_lines(rows)
  if versions:
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
  return lines


def table(rows, sources):
  """One Markdown row per cell, width and depth, with how far its timings can be trusted."""
  impls = impl_order(rows)
  ours = [i for i in impls if i.startswith("deeprnn_jax")]
  peers = [i for i in impls if i not in ours]
  ratios = [(a, b) for a in ours for b in peers]
  ratios += [(a, ours[0]) for a in ours[1:] if ours[0] == "deeprnn_jax"]
  jitted = [i for i in impls if any(r["impl"] == i and r.get("compile_s") is not None
                                    for r in rows)]
  by_key = {(r["impl"], r["cell"], r["hidden"], r["depth"]): r for r in rows}
  points = sorted({(r["cell"], r["hidden"], r["depth"]) for r in rows},
                  key=lambda p: (["rnn", "lstm", "gru"].index(p[0])
                                 if p[0] in ("rnn", "lstm", "gru") else 9, p[1], p[2]))
  cols = (["cell", "H", "L", f"params ({impls[0]})"]
          + [f"{i} tok/s" for i in impls]
          + [f"{a} / {b}" for a, b in ratios]
          + [f"{i} compile s" for i in jitted]
          + [f"{i} MFU" for i in impls]
          + ["load", "fewest rounds", "largest spread", "session", "flags"])
  sessions = point_sessions(rows, sources)
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for cell, hidden, depth in points:
    get = lambda impl: by_key.get((impl, cell, hidden, depth))
    tok = {i: (get(i) or {}).get("tokens_per_s") for i in impls}
    params = next(((get(i) or {}).get("params") for i in impls if get(i)), None)
    cells = [cell, str(hidden), str(depth), _fmt(params, ",d")]
    cells += [_fmt(tok[i], ",.0f") for i in impls]
    cells += [_fmt(tok[a] / tok[b] if tok[a] and tok[b] else None, ".2f") for a, b in ratios]
    cells += [_fmt((get(i) or {}).get("compile_s"), ".2f") for i in jitted]
    cells += [_small(100 * get(i)["mfu"], "%") if get(i) else "–" for i in impls]
    loads = [get(i).get("load_avg_1min") for i in impls if get(i)]
    cells.append(_span(loads, ".0f"))
    here = [get(i) for i in impls if get(i)]
    rounds = [r["rounds"] for r in here if r.get("rounds") is not None]
    spreads = [r["spread"] for r in here if r.get("spread") is not None]
    cells += [_fmt(min(rounds) if rounds else None, "d"),
              _small(100 * max(spreads), "%") if spreads else "–",
              sessions[(cell, hidden, depth)], "; ".join(timing_flags(here)) or "–"]
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def memory_table(rows):
  """XLA's temporary-buffer bytes per jitted impl (activations kept for the backward pass
  and workspace), and the backend's peak where it reports one."""
  impls = [i for i in impl_order(rows)
           if any(r["impl"] == i and r.get("xla_temp_bytes") is not None for r in rows)]
  if not impls:
    return []
  by_key = {(r["impl"], r["cell"], r["hidden"], r["depth"]): r for r in rows}
  points = sorted({(r["cell"], r["hidden"], r["depth"]) for r in rows},
                  key=lambda p: (["rnn", "lstm", "gru"].index(p[0])
                                 if p[0] in ("rnn", "lstm", "gru") else 9, p[1], p[2]))
  kinds = sorted({r.get("peak_mem_kind") for r in rows if r.get("peak_mem_kind")})
  cols = ["cell", "H", "L"] + [f"{i} XLA temp MB" for i in impls]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for cell, hidden, depth in points:
    vals = [(by_key.get((i, cell, hidden, depth)) or {}).get("xla_temp_bytes") for i in impls]
    lines.append("| " + " | ".join([cell, str(hidden), str(depth)] + [
        _small(None if v is None else v / 2**20) for v in vals]) + " |")
  note = ("XLA temp: `compiled.memory_analysis().temp_size_in_bytes`, the step's "
          "intermediate buffers (parameters and optimizer state not included). The JSON "
          f"also holds `peak_mem_bytes` ({'; '.join(kinds)}).")
  return ["## Memory", ""] + lines + ["", note, ""]


def plot_title(rows):
  """Device, sizes and date for a figure, which may be seen without its table."""
  first, dates = rows[0], sorted(r["date"] for r in rows)
  device = sorted({r["device"] for r in rows if r["impl"] not in ("torch", "keras")}
                  or {first["device"]})
  return (f"{'; '.join(device)}, B={first['batch']}, T={first['time']}, "
          f"F={first['features']}, {dates[0][:10]}")


def plot(rows, key, label, log, path):
  """`key` against depth: one line per impl, one panel per (width, cell)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  impls = impl_order(rows)
  cells = [c for c in ("rnn", "lstm", "gru") if any(r["cell"] == c for r in rows)]
  hiddens = sorted({r["hidden"] for r in rows})
  fig, axes = plt.subplots(len(hiddens), len(cells), squeeze=False, sharex=True,
                           figsize=(3.2 * len(cells), 2.6 * len(hiddens)))
  for (hi, hidden), (ci, cell) in ((h, c) for h in enumerate(hiddens) for c in enumerate(cells)):
    ax = axes[hi][ci]
    for impl in impls:
      pts = sorted((r["depth"], r[key]) for r in rows if r["impl"] == impl
                   and r["cell"] == cell and r["hidden"] == hidden and r.get(key) is not None)
      if pts:
        ax.plot(*zip(*pts), marker="o", ms=3, label=impl)
    ax.set_title(f"{cell}, H={hidden}", fontsize=9)
    ax.set_xscale("log", base=2)
    if log:
      ax.set_yscale("log")
    else:
      ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(_short)
    ax.yaxis.set_minor_formatter(_short_minor if log else "")
    ax.tick_params(labelsize=7, which="both")
    ax.grid(alpha=0.3)
    if hi == len(hiddens) - 1:
      ax.set_xlabel("depth L", fontsize=8)
  depths = sorted({r["depth"] for r in rows})
  for ax in axes.flat:
    ax.set_xticks(depths, [str(d) for d in depths])
  fig.supylabel(label, fontsize=9)
  fig.suptitle(plot_title(rows), fontsize=9)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  fig.savefig(path, dpi=80)
  plt.close(fig)


def render(paths, name):
  """The Markdown text of the report on `paths`, and the plots it links as
  [(png name, extra_info key, axis label, log scale)]; nothing is written."""
  rows, sources = load_rows(paths)
  lines = header(rows, sources, name) + ["", "## Results", ""] + table(rows, sources) + [""]
  lines += ["Ratios are tokens/s over tokens/s (above 1: deeprnn_jax is faster). "
            "Compile s: `jax.jit(step).trace(...).lower().compile()`; PyTorch is eager. "
            "Load: the 1-min load average when the point's benchmarks started (the machine "
            "has the number of cores named above; more than that means other processes "
            "shared them). Fewest rounds and largest spread: over the point's impls.", ""]
  lines += memory_table(rows)
  plots = []
  for suffix, (key, label, log) in PLOTS.items():
    if any(r.get(key) is not None for r in rows):
      plots.append((f"{name}-{suffix}.png", key, label, log))
      lines += [f"![{label} against depth]({name}-{suffix}.png)", ""]
  return "\n".join(lines), (rows, plots)


def write_report(paths, out_dir, name, plots=True):
  """Writes `<name>.md` (and its PNGs unless `plots` is False) under `out_dir`; returns
  the Markdown path."""
  text, (rows, pngs) = render(paths, name)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  if plots:
    for png, key, label, log in pngs:
      plot(rows, key, label, log, out_dir / png)
  md = out_dir / f"{name}.md"
  md.write_text(text)
  return md


def is_grid_json(path):
  """Whether `path` is a pytest-benchmark file (results/ also holds other JSON)."""
  try:
    return "benchmarks" in json.loads(pathlib.Path(path).read_text())
  except (OSError, ValueError):
    return False


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("json", nargs="*", type=pathlib.Path,
                      help="pytest-benchmark JSON files (default: benchmarks/results/*.json)")
  parser.add_argument("--name", help="merge all inputs into one report of this name")
  parser.add_argument("--out-dir", type=pathlib.Path,
                      help="where to write (default: next to each JSON file)")
  parser.add_argument("--no-plots", action="store_true",
                      help="write only the Markdown (the PNGs it links stay as they are)")
  args = parser.parse_args(argv)
  paths = args.json or [p for p in sorted(RESULTS.glob("*.json")) if is_grid_json(p)]
  if not paths:
    parser.error(f"no JSON files given and none in {RESULTS}")
  missing = [str(p) for p in paths if not p.is_file()]
  if missing:
    parser.error(f"json: no such file: {', '.join(missing)}")
  groups = [(args.name, paths)] if args.name else [(p.stem, [p]) for p in paths]
  for name, group in groups:
    md = write_report(group, args.out_dir or group[0].parent, name, plots=not args.no_plots)
    print(md)


if __name__ == "__main__":
  sys.exit(main())
