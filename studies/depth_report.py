"""The depth study's tables and plots, from its JSON alone (no JAX: the docs render them).

    python -m studies.depth --summary     # the full table (this module's `summary`)
"""

import os

import numpy as np

KEY = ("cell", "width", "regularised", "depth", "seed")  # one row per point
# one plot each: (row field, axis label, file name suffix); and one of the gradient ratios
PLOTS = (("test_accuracy", "test accuracy (best validation epoch)", "test_accuracy"),
         ("gap", "train - validation accuracy (best validation epoch)", "gap"),
         ("seconds_per_epoch", "seconds per epoch (training + validation)", "seconds"))




def key(row):
  return tuple(row[k] for k in KEY)


def groups(rows):
  """{(cell, width, regularised, depth): [rows of its seeds]}, finished runs only."""
  out = {}
  for row in rows:
    if row["status"] == "ok":
      out.setdefault(key(row)[:4], []).append(row)
  return dict(sorted(out.items()))


def spread(values):
  """(mean, min, max) over the seeds."""
  return float(np.mean(values)), float(np.min(values)), float(np.max(values))


def _cell(values, digits):
  mean, low, high = spread(values)
  if len(values) == 1:
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def _ratio(values):
  mean, low, high = spread(values)
  return f"{mean:.2g}" if low == high else f"{mean:.2g} ({low:.2g}-{high:.2g})"


def summary(results):
  """The markdown table: one line per (cell, width, regularised, depth), mean ± half the
  range over its seeds; above it, what the runs were and where they ran."""
  rows, s = results["rows"], results["settings"]
  if not rows:
    return "no runs in the file yet"
  sessions = results["sessions"]
  used = sorted({r["session"] for r in rows})
  where = "; ".join(sorted({f"{sessions[i]['cpu']} ({sessions[i]['cpus_usable']} CPUs "
                            f"usable), jax {sessions[i]['jax']}, commit "
                            f"{(sessions[i]['git_commit'] or 'unknown')[:10]}"
                            for i in used}))
  dates = sorted(r["finished_utc"][:10] for r in rows)
  ok = [r for r in rows if r["status"] == "ok"]
  sizes = (f"{ok[0]['n_train']:,} train / {ok[0]['n_val']:,} validation / "
           f"{ok[0]['n_test']:,} test reviews" if ok else "")
  lines = [
      f"IMDB, {s['epochs']} epoch{'s' * (s['epochs'] > 1)}, {sizes}, the last {s['maxlen']} tokens, vocabulary "
      f"{s['vocab']}, embedding {s['embed']}, batch {s['batch_size']}, Adam {s['lr']}; "
      f"regularised: dropout {s['dropout']}"
      f"{' and residual connections' if s.get('regulariser', 'dropout+residual') != 'dropout' else ' alone'}. Mean ± half the "
      f"range over the seeds (gradient ratios: mean (min-max)). {where}; "
      f"{dates[0]} to {dates[-1]}.", "",
      "| cell | width | regularised | depth | RNN params | seeds | best val acc | "
      "test acc | train - val gap | s / epoch | grad layer 0 / top, init | "
      "grad layer 0 / top, end |",
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for (cell, width, reg, depth), runs in groups(rows).items():
    col = lambda field: [r[field] for r in runs]
    lines.append(
        f"| {cell.upper()} | {width} | {'yes' if reg else 'no'} | {depth} | "
        f"{runs[0]['rnn_params']:,} | {len(runs)} | {_cell(col('best_val_accuracy'), 4)} | "
        f"{_cell(col('test_accuracy'), 4)} | {_cell(col('gap'), 4)} | "
        f"{_cell(col('seconds_per_epoch'), 1)} | {_ratio(col('grad_ratio_init'))} | "
        f"{_ratio(col('grad_ratio_end'))} |")
  failed = [r for r in rows if r["status"] != "ok"]
  if failed:
    lines += ["", "Diverged (left out above): " + ", ".join(
        " ".join(f"{k}={r[k]}" for k in KEY) for r in failed)]
  return "\n".join(lines)


def lines_by_setup(rows):
  """{(cell, width, regularised): {depth: [rows]}}: one plotted line each."""
  out = {}
  for (cell, width, reg, depth), runs in groups(rows).items():
    out.setdefault((cell, width, reg), {})[depth] = runs
  return out


def plot(results, out):
  """One PNG per metric in PLOTS in the JSON's directory (SUFFIX.png), and one of the
  gradient ratios at initialisation and after training; returns their paths."""
  import matplotlib
  matplotlib.use("Agg")  # files only, no display
  import matplotlib.pyplot as plt
  folder = os.path.dirname(os.path.abspath(out))
  setups = lines_by_setup(results["rows"])
  depths = sorted({d for by_depth in setups.values() for d in by_depth})
  paths = []

  def draw(ax, field):
    colours = {}
    for i, ((cell, width, reg), by_depth) in enumerate(setups.items()):
      xs = sorted(by_depth)
      means, lows, highs = np.array([spread([r[field] for r in by_depth[d]]) for d in xs]).T
      shift = 0.04 * (i - (len(setups) - 1) / 2)  # apart, so that the bars do not hide
      ax.errorbar(np.add(xs, shift), means, yerr=[means - lows, highs - means], fmt="o",
                  color=colours.setdefault((cell, width), f"C{len(colours)}"), capsize=3,
                  linestyle="--" if reg else "-",
                  label=f"{cell.upper()} {width}{', regularised' if reg else ''}")
    ax.set(xlabel="depth (recurrent layers)", xticks=depths)
    ax.grid(alpha=0.3, which="both")

  def save(fig, suffix):
    fig.tight_layout()
    paths.append(os.path.join(folder, f"{suffix}.png"))
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)

  for field, label, suffix in PLOTS:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    draw(ax, field)
    ax.set(ylabel=label, title="IMDB: mean over seeds, bars from min to max")
    ax.legend(fontsize=8)
    save(fig, suffix)
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  for ax, when, moment in zip(axes, ("init", "end"), ("at initialisation", "after training")):
    draw(ax, f"grad_ratio_{when}")
    ax.set(yscale="log", title=f"gradient reaching layer 0 / the top layer, {moment}")
  axes[0].set_ylabel("mean ||dLoss/dh_t||: layer 0 / top")
  axes[1].legend(fontsize=8)
  save(fig, "gradients")
  return paths




def by_depth(results, width, field, digits):
  """A compact table for one width: a line per (cell, regularised), a column per depth,
  the mean of `field` over the seeds."""
  table = lines_by_setup(results["rows"])
  depths = sorted({r["depth"] for r in results["rows"] if r["width"] == width})
  lines = ["| " + " | ".join([f"width {width}"] + [f"depth {d}" for d in depths]) + " |",
           "| --- " * (len(depths) + 1) + "|"]
  for (cell, w, reg), runs in sorted(table.items(), key=lambda kv: (kv[0][0] != "gru",
                                                                      kv[0][2])):
    if w != width:
      continue
    cells = [f"{np.mean([r[field] for r in runs[d]]):.{digits}f}" if d in runs else "-"
             for d in depths]
    lines.append(f"| {cell.upper()}{', dropout + residual' if reg else ''} | "
                 + " | ".join(cells) + " |")
  return "\n".join(lines)
