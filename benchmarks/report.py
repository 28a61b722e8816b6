"""Markdown tables and PNG plots from the benchmark suite's pytest-benchmark JSON.

    python benchmarks/report.py                                  # every benchmarks/results/*.json
    python benchmarks/report.py benchmarks/results/cpu-2core.json
    python benchmarks/report.py a.json b.json --name merged      # one report from several runs

For each input `<name>.json` it writes, next to it (or under `--out-dir`), `<name>.md`: one
row per cell, width and depth with tokens/s per impl, deeprnn_jax's ratio to each peer,
compile seconds, parameters and MFU; and the plots `<name>-tokens.png`,
`<name>-compile.png`, `<name>-params.png`, `<name>-mfu.png` (against depth, one line per
impl, one panel per cell and width).
"""

import argparse
import json
import math
import pathlib
import sys

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PEERS = ("flax", "torch")
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


def load_rows(paths):
  """extra_info of every benchmark in `paths`, later files replacing equal points."""
  rows, machine = {}, {}
  for path in paths:
    data = json.loads(pathlib.Path(path).read_text())
    machine = dict(data.get("machine_info", machine))
    commit = data.get("commit_info") or {}
    if commit.get("id"):
      machine["commit"] = commit["id"][:10] + (" (with uncommitted changes)"
                                              if commit.get("dirty") else "")
    for bench in data.get("benchmarks", []):
      info = dict(bench.get("extra_info") or {})
      if "tokens_per_s" not in info:
        continue  # not a training-step benchmark (or run with --benchmark-disable)
      stats = bench.get("stats") or {}
      if stats.get("median"):
        info["spread"] = (stats["max"] - stats["min"]) / stats["median"]
      rows[(info["impl"], info["cell"], info["hidden"], info["depth"])] = info
  if not rows:
    raise SystemExit(f"report: no training-step benchmarks in {[str(p) for p in paths]}; "
                     f"run pytest benchmarks/ --benchmark-json=PATH (without "
                     f"--benchmark-disable) first")
  return list(rows.values()), machine


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


def header(rows, machine, name):
  """The lines naming device, date, sizes, matmul rate, machine load and versions."""
  first = rows[0]
  devices = sorted({f"{r['device']}" for r in rows})
  dates = sorted(r["date"] for r in rows)
  cores = machine.get("cpu", {}).get("count") if isinstance(machine.get("cpu"), dict) else None
  loads = [r.get("load_avg_1min") for r in rows]
  versions = first.get("versions") or {}
  lines = [
      f"# Training-step benchmark: {name}",
      "",
      "One jitted training step of a sequence classifier (forward + backward + "
      "`clip_by_global_norm(1)` + Adam): inputs [B, T, F] -> a stack of L layers of width H "
      "-> last output -> dense(1) -> BCE. PyTorch runs eagerly "
      "(`nn.RNN/LSTM/GRU(num_layers=L)` + `clip_grad_norm_` + Adam).",
      "",
      f"- Device: {'; '.join(devices)}",
      f"- Date: {dates[0][:16]} to {dates[-1][:16]}",
      f"- Sizes: B={first['batch']}, T={first['time']}, F={first['features']}; "
      f"tokens/s = B*T / median step time",
      f"- float32 matmul rate (1024^3, same session): "
      f"{_span([r['matmul_gflops'] for r in rows], '.1f')} GFLOP/s; MFU = analytic model "
      f"FLOPs per step (forward matmuls x 3) / step time / that rate",
      f"- Machine load (1-min load average at the start of each benchmark): "
      f"{_span(loads, '.1f')}" + (f" on {cores} cores" if cores else "") +
      ". Other processes were running, so absolute figures are noisy; the impls of a "
      "grid point ran back to back, so their ratios compare like with like.",
  ]
  spreads = sorted(r["spread"] for r in rows if r.get("spread") is not None)
  if spreads:
    lines.append(f"- Spread of the timed rounds of one benchmark ((max - min) / median): "
                 f"median {100 * spreads[len(spreads) // 2]:.0f}%, largest "
                 f"{100 * spreads[-1]:.0f}%; single cells can be off by that much, trends "
                 f"across depths and cells are the firmer reading.")
  if versions:
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
                 + (f"; deeprnn_jax commit {machine['commit']}" if "commit" in machine else ""))
  return lines


def table(rows):
  """One Markdown row per cell, width and depth."""
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
          + [f"{i} MFU" for i in impls] + ["load"])
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
  device = sorted({r["device"] for r in rows if r["impl"] != "torch"} or {first["device"]})
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


def write_report(paths, out_dir, name):
  """Writes `<name>.md` and its PNGs under `out_dir`; returns the Markdown path."""
  rows, machine = load_rows(paths)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  lines = header(rows, machine, name) + ["", "## Results", ""] + table(rows) + [""]
  lines += ["Ratios are tokens/s over tokens/s (above 1: deeprnn_jax is faster). "
            "Compile s: `jax.jit(step).trace(...).lower().compile()`; PyTorch is eager. "
            "Load: the 1-min load average when the point's benchmarks started (the machine "
            "has the number of cores named above; more than that means other processes "
            "shared them).", ""]
  lines += memory_table(rows)
  for suffix, (key, label, log) in PLOTS.items():
    if any(r.get(key) is not None for r in rows):
      png = out_dir / f"{name}-{suffix}.png"
      plot(rows, key, label, log, png)
      lines += [f"![{label} against depth]({png.name})", ""]
  md = out_dir / f"{name}.md"
  md.write_text("\n".join(lines))
  return md


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("json", nargs="*", type=pathlib.Path,
                      help="pytest-benchmark JSON files (default: benchmarks/results/*.json)")
  parser.add_argument("--name", help="merge all inputs into one report of this name")
  parser.add_argument("--out-dir", type=pathlib.Path,
                      help="where to write (default: next to each JSON file)")
  args = parser.parse_args(argv)
  paths = args.json or sorted(RESULTS.glob("*.json"))
  if not paths:
    parser.error(f"no JSON files given and none in {RESULTS}")
  missing = [str(p) for p in paths if not p.is_file()]
  if missing:
    parser.error(f"json: no such file: {', '.join(missing)}")
  groups = [(args.name, paths)] if args.name else [(p.stem, [p]) for p in paths]
  for name, group in groups:
    md = write_report(group, args.out_dir or group[0].parent, name)
    print(md)


if __name__ == "__main__":
  sys.exit(main())
