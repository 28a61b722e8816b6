"""The character-level depth study's tables, fits and plots, from its rows alone.

No JAX at import: the docs render the table from the committed JSON (`stack_params`
imports the library when called). A row is examples/lm/report.py's `row` plus the
point (impl, cell, setup, depth, width, residual, seed).
"""

import math
from typing import Dict, List, Optional

import numpy as np

SETUP_NAMES = {"equal_params": "equal params", "equal_width": "equal width"}
CAP = 5.0  # bpc: above the plateau of a model that knows only the characters' frequencies


def stack_params(cell: str, depth: int, width: int, embed: int) -> int:
  """The exact parameter count of the library's `depth`-layer stack of `width` over
  `embed` inputs (shapes only: nothing is initialised)."""
  import jax

  import deeprnn_jax as drnn
  rnn = drnn.stacked_rnn(cell, embed, (width,) * depth)
  shapes = jax.eval_shape(rnn.init, jax.random.key(0))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def label(row: dict) -> str:
  return (f"{row['depth']} x {row['width']}" + (" residual" if row["residual"] else ""))


def groups(rows: List[dict]) -> Dict[tuple, List[dict]]:
  """Rows by point without the seed: (impl, cell, setup, depth, width, residual)."""
  out = {}
  for r in rows:
    out.setdefault((r["impl"], r["cell"], r["setup"], r["depth"], r["width"], r["residual"]),
                   []).append(r)
  return out


def fit_curve(curve: List[dict]) -> Optional[tuple]:
  """(a, b, c) of val_bits(n) ~ a + b n^-c, least squares over the second half of the
  curve (the first steps fall too fast for any power law); None with fewer than 4
  points there. c is searched on a grid, a and b are then linear."""
  pts = [(p["tokens"], p["val_bits"]) for p in curve if p["tokens"] > 0]
  pts = pts[len(pts) // 2:]
  if len(pts) < 4:
    return None
  n, y = (np.array(v, np.float64) for v in zip(*pts))
  best = None
  for c in np.linspace(0.05, 2.0, 196):
    design = np.stack([np.ones_like(n), n ** -c], 1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    err = float(((design @ coef - y) ** 2).sum())
    if coef[1] > 0 and coef[0] >= 0 and (best is None or err < best[0]):  # a floor >= 0 bits
      best = (err, float(coef[0]), float(coef[1]), float(c))
  return best[1:] if best else None


def predict(fit: tuple, n) -> np.ndarray:
  a, b, c = fit
  return a + b * np.asarray(n, np.float64) ** -c


def crossover(shallow: dict, deep: dict, horizon: float = 100.0) -> str:
  """Where `deep`'s fitted curve goes below `shallow`'s: "now" if it already is at the
  budget, "~N M chars" within `horizon` times the budget, else "beyond 100x"."""
  fs, fd = fit_curve(shallow["curve"]), fit_curve(deep["curve"])
  if deep["val_bits"] < shallow["val_bits"]:
    return "now"
  if fs is None or fd is None:
    return "no fit"
  budget = shallow["curve"][-1]["tokens"]
  n = np.geomspace(budget, budget * horizon, 400)
  below = np.nonzero(predict(fd, n) < predict(fs, n))[0]
  return f"~{n[below[0]] / 1e6:.0f}M chars" if len(below) else f"beyond {horizon:.0f}x"


def _stat(values):
  m = float(np.mean(values))
  return f"{m:.3f}" if len(values) == 1 else f"{m:.3f} ± {float(np.std(values)):.3f}"


def table(rows: List[dict]) -> List[str]:
  """Markdown: one line per point (seeds merged: mean ± std), by cell, setup and depth;
  the crossover column compares each point's curve with depth 1 of its setup."""
  lines = ["| impl | cell | setup | depth x width | stack params | seeds | val bpc | "
           "test bpc | train bpc | depth-1 crossover | tokens/s |", "| --- " * 11 + "|"]
  g = groups(rows)
  for key in sorted(g, key=lambda k: (k[0] != "jax", k[1], k[2], k[3], k[5])):
    impl, cell, setup, depth, width, residual = key
    rs = g[key]
    base = g.get(("jax", cell, setup, 1, next(
        (k[4] for k in g if k[:4] == ("jax", cell, setup, 1)), width), False))
    cross = "" if depth == 1 or not base or impl != "jax" else crossover(base[0], rs[0])
    lines.append(
        f"| {impl} | {cell} | {SETUP_NAMES[setup]} | {label(rs[0])} | "
        f"{rs[0].get('stack_params', '')} | {len(rs)} | {_stat([r['val_bits'] for r in rs])} | "
        f"{_stat([r['test_bits'] for r in rs])} | {_stat([r['train_bits'] for r in rs])} | "
        f"{cross} | {np.mean([r['tokens_per_s'] for r in rs]):,.0f} |")
  return lines


def _plot_depth(ax, rows):
  g = groups(rows)
  for cell, color in (("lstm", "C0"), ("gru", "C1")):
    for setup, style in (("equal_params", "-"), ("equal_width", "--")):
      keys = sorted((k for k in g if k[:3] == ("jax", cell, setup) and
                     (k[5] or k[3] < 4 or not any(j[:4] == k[:4] and j[5] for j in g))),
                    key=lambda k: k[3])
      if not keys:
        continue
      ys = [[r["test_bits"] for r in g[k]] for k in keys]
      means = [min(np.mean(y), CAP) for y in ys]
      ax.errorbar([k[3] for k in keys], means,
                  yerr=[np.std(y) for y in ys], fmt=style + "o", color=color, capsize=3,
                  label=f"{cell}, {SETUP_NAMES[setup]}")
      for k, y in zip(keys, ys):
        if np.mean(y) > CAP:  # a diverged run, drawn at the top edge with its value
          ax.annotate(f"{np.mean(y):.1f}", (k[3], CAP), textcoords="offset points",
                      xytext=(4, -10), color=color, fontsize=8)
      plain = [k for k in g if k[:3] == ("jax", cell, setup) and k[3] >= 4 and not k[5]]
      for k in plain:
        ax.plot(k[3], min(np.mean([r["test_bits"] for r in g[k]]), CAP), "x", color=color,
                ms=9)
  ax.set_ylim(top=CAP + 0.1)
  ax.set_xlabel("depth (residual from 4; x: the same depth without residual)")
  ax.set_ylabel("test bits per character")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)


def _plot_curves(ax, rows, cell):
  g = groups(rows)
  keys = sorted((k for k in g if k[:3] == ("jax", cell, "equal_params")),
                key=lambda k: (k[3], k[5]))
  for i, k in enumerate(keys):
    r = g[k][0]
    n = [p["tokens"] for p in r["curve"]]
    line, = ax.plot(n, [p["val_bits"] for p in r["curve"]], "-", color=f"C{i}",
                    label=label(r) + ("" if k[5] or k[3] < 4 else " plain"))
    fit = fit_curve(r["curve"])
    if fit:
      far = np.geomspace(n[-1], n[-1] * 20, 30)
      ax.plot(far, predict(fit, far), ":", color=line.get_color())
  ax.set_xscale("log")
  ax.set_ylim(top=CAP + 0.1)
  ax.set_xlabel("training characters seen (dotted: fitted a + b n^-c, extrapolated)")
  ax.set_ylabel("validation bits per character")
  ax.set_title(f"{cell.upper()}, equal parameters", fontsize=9)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7)


def plot(rows: List[dict], prefix: str) -> None:
  """prefix.png: test bpc against depth, and the learning curves of each cell."""
  if not rows:
    return
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cells = [c for c in ("lstm", "gru") if any(r["cell"] == c for r in rows)]
  fig, axes = plt.subplots(1, 1 + len(cells), figsize=(5 * (1 + len(cells)), 4))
  _plot_depth(axes[0], rows)
  for ax, cell in zip(axes[1:], cells):
    _plot_curves(ax, rows, cell)
  r = rows[0]
  fig.suptitle(f"IMDB characters, {r['curve'][-1]['tokens'] / 1e6:.1f}M training characters "
               f"per point; {r.get('cpu')}, {str(r.get('utc'))[:10]}", fontsize=9)
  fig.tight_layout()
  fig.savefig(prefix + ".png", dpi=80)
  plt.close(fig)
