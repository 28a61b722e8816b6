"""When does depth pay? The IMDB classifier at several depths, trained the same way.

A grid of (cell, width, regularised, depth, seed) points, each one trainer run
(examples/imdb/train.py's own functions, in this process: the reviews are read and
encoded once for the whole study):

    python -m studies.depth                      # the full grid: 2 x 2 x 2 x 5 x 3 = 120 runs
    python -m studies.depth --cells gru --widths 5 --seeds 0   # a smaller grid
    python -m studies.depth --summary            # the markdown table of what is done
    python -m studies.depth --plot-only          # redraw the plots from the JSON

Defaults: LSTM and GRU; widths 5 (the seed's) and 32; depths 1, 2, 3, 4, 6; seeds 0, 1,
2; each without and with regularisation (dropout 0.2 on the word vectors, between the
layers and on the pooled features, plus residual connections between equally wide
layers); otherwise the seed model (embedding 32 of 10,000 words, the last 100 tokens,
pooling "last", Adam 1e-3, batch 32), 3 epochs on all 20,000 training reviews, 5,000
held out for validation, tested on all 25,000 test reviews with the params of the best
validation epoch (the trainer's --select best).

Every finished run is written at once to the JSON file (default
studies/results/depth/results.json), one row per point, and a later command skips
the points already there: interrupt the study (Ctrl-C) and rerun the same command to
continue, in this session or another. The file's settings (epochs, limits, dropout)
must match the command's; choose another --out for other settings.

Per row: best validation accuracy and its epoch; test accuracy of that epoch's params;
train accuracy of the same params in evaluation mode (no dropout) on a sample of the
training split as large as the validation split (its first reviews, in stored order),
and the train-validation gap it gives (the trainer's running train accuracy of that
epoch, measured with dropout on while the weights moved, is kept as
`train_accuracy_running`); parameter counts; seconds per epoch (training and
validation, as the trainer counts them); and gradient norms per layer at
initialisation and after the last epoch, from `drnn.diagnostics.state_gradient_norms`
on a fixed batch of 250 training reviews: `grad_state_*[l]` is the mean over time steps
of ||dLoss/dh_t^l|| (the gradient that reaches layer l's hidden states),
`grad_param_*[l]` the norm of layer l's parameter gradient.

Duration, estimated for this project's 2-core CPU from the train step's time per batch
(about 4 + 2.5 x depth ms at width 5, 2 + 9 x depth ms at width 32, 20 x depth ms at
width 64; evaluation adds about 15%, compilation about 10 s per network, once for its
seeds): about 25 minutes for the 60 width-5 runs and 70 for the 60 width-32 runs, so
1 h 40 min for the full grid (1 h 15 min with --epochs 2), in one session or several
(e.g. --widths 5, then --widths 32); --widths 5,64 would take about 3 hours. These are
estimates, not measurements of the study; a shared machine is slower.
"""

import argparse
import datetime
import json
import os
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import deeprnn_jax as drnn
from examples.common import allocator
from examples.common import cli
from examples.common import imdb_text
from examples.common import provenance
from examples.imdb import configs
from examples.imdb import input_pipeline
from examples.imdb import model
from examples.imdb import parallel
from examples.imdb import train as trainer
from studies import depth_report
from studies.depth_report import KEY, key, plot, summary  # noqa: F401 (the study's API)

HERE = os.path.dirname(os.path.abspath(__file__))

DEFAULT_OUT = os.path.join(HERE, "results", "depth", "results.json")
PROBE_ROWS = 250  # training reviews in the fixed batch the gradient norms are taken on
REGULARISED = {"no": (False,), "yes": (True,), "both": (False, True)}
REGULARISERS = {"dropout+residual": True, "dropout": False}  # -> residual connections?
LEGACY = {"regulariser": "dropout+residual"}  # the settings of files older than the key
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
class StudyError(Exception):
  """A results file that cannot be used as asked; the message says what to do."""


# ---------------------------------------------------------------- the command line

def _list(kind, choices=None):
  def parse(text):
    try:
      values = tuple(kind(v) for v in text.split(","))
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    bad = [v for v in values if (choices and v not in choices) or (kind is int and v < 0)]
    if bad or not values:
      raise argparse.ArgumentTypeError(
          f"expected {'one of ' + ', '.join(choices) if choices else 'non-negative integers'}"
          f" separated by commas, got {text!r}")
    return tuple(dict.fromkeys(values))  # each once: a point is one row

  return parse


def _positive(text):
  values = _list(int)(text)
  if 0 in values:
    raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
  return values


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cells", type=_list(str, ("rnn", "lstm", "gru")), default=("lstm", "gru"))
  p.add_argument("--widths", type=_positive, default=(5, 32), help="units per layer")
  p.add_argument("--depths", type=_positive, default=(1, 2, 3, 4, 6))
  p.add_argument("--seeds", type=_list(int), default=(0, 1, 2))
  p.add_argument("--regularised", choices=tuple(REGULARISED), default="both",
                 help="without (no), with (yes) or both: dropout --dropout plus residual "
                      "connections between layers")
  p.add_argument("--regulariser", choices=tuple(REGULARISERS), default="dropout+residual",
                 help="what the regularised runs add: dropout and residual connections "
                      "(default), or dropout alone")
  p.add_argument("--dropout", type=cli.number(float, 0.0, low_ok=False, high=1.0),
                 default=0.2, help="the dropout rate of the regularised runs")
  p.add_argument("--epochs", type=cli.number(int, 1), default=3)
  p.add_argument("--limit-train", type=cli.number(int, 0), default=0, metavar="N",
                 help="the first N training reviews (0 = all 25,000), 20%% held out")
  p.add_argument("--limit-test", type=cli.number(int, 0), default=0, metavar="N",
                 help="the first N test reviews (0 = all 25,000)")
  p.add_argument("--data-dir", help="tfds data dir; else $TFDS_DATA_DIR, else "
                                    "~/tensorflow_datasets")
  p.add_argument("--out", default=DEFAULT_OUT,
                 help="the results JSON; the plots are written next to it")
  p.add_argument("--plot-only", action="store_true", help="redraw the plots, train nothing")
  p.add_argument("--summary", action="store_true",
                 help="print the markdown table of the results, train nothing")
  return p.parse_args(argv)


def settings(args):
  """What every run of the study shares; a results file holds rows of one setting."""
  return {"epochs": args.epochs, "limit_train": args.limit_train,
          "regulariser": args.regulariser,
          "limit_test": args.limit_test, "dropout": args.dropout, "probe_rows": PROBE_ROWS,
          **{k: configs.DEFAULTS[k] for k in ("embed", "vocab", "maxlen", "pooling",
                                             "batch_size", "lr", "schedule", "clip",
                                             "val_split", "select", "eval_batch_size")}}


def points(args):
  """The grid, seeds outermost: a study stopped early has whole grids of fewer seeds."""
  return [dict(cell=c, width=w, regularised=r, depth=d, seed=s)
          for s in args.seeds for w in args.widths for c in args.cells
          for r in REGULARISED[args.regularised] for d in args.depths]


# ---------------------------------------------------------------- the results file

def read_results(path):
  """The results file, or an empty one if there is none yet."""
  if not os.path.exists(path):
    return {"settings": None, "sessions": [], "rows": []}
  try:
    with open(path) as f:
      results = json.load(f)
  except (OSError, ValueError) as e:
    raise StudyError(f"cannot read {path} ({type(e).__name__}: {e}); move it away to "
                     f"start over, or pass another --out") from None
  if not {"settings", "sessions", "rows"} <= results.keys():
    raise StudyError(f"{path} is not a depth-study results file (no settings, sessions "
                     f"and rows); pass another --out")
  return results


def check_settings(results, wanted, path):
  """Refuses to add rows trained differently from those already in the file."""
  have = results["settings"]
  if have is None:
    return
  changed = [f"{k} (file: {have.get(k, LEGACY.get(k))!r}, now: {v!r})"
             for k, v in wanted.items() if have.get(k, LEGACY.get(k)) != v]
  if changed:
    raise StudyError(f"{path} holds runs with other settings: {'; '.join(changed)}. Rerun "
                     f"with the file's settings to continue it, or pass another --out")


def write_results(path, results):
  """Writes the whole file atomically: an interruption leaves the old or the new one."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(results, f, indent=1)
  os.replace(tmp, path)


# ---------------------------------------------------------------- data

class Pool(NamedTuple):
  """The encoded reviews, before the seed's validation split: reused by every run."""

  train: input_pipeline.Reviews  # the whole (or --limit-train) training split
  test: input_pipeline.Reviews
  vocab: dict


def load_pool(data_dir, s):
  """Reads and encodes the reviews once, and undoes the one validation split `load` made."""
  data = input_pipeline.load(data_dir, s["vocab"], s["maxlen"], s["val_split"], seed=0,
                             limit_train=s["limit_train"], limit_test=s["limit_test"])
  n = len(data.train.labels) + len(data.val.labels)
  train_idx, val_idx = input_pipeline.split_indices(n, s["val_split"], 0)
  whole = [np.empty((n,) + a.shape[1:], a.dtype) for a in data.train]
  for rows, part in ((train_idx, data.train), (val_idx, data.val)):
    for array, values in zip(whole, part):
      array[rows] = values
  return Pool(input_pipeline.Reviews(*whole), data.test, data.vocab)


def split(pool, val_split, seed):
  """The Data the trainer would load with --seed `seed`: its validation split."""
  train_idx, val_idx = input_pipeline.split_indices(len(pool.train.labels), val_split, seed)
  return input_pipeline.Data(pool.train.take(train_idx), pool.train.take(val_idx),
                             pool.test, pool.vocab)


# ---------------------------------------------------------------- one run

class Network(NamedTuple):
  """What the seeds of a point share: the model, optimizer and compiled steps."""

  net: model.Classifier
  tx: object  # optax.GradientTransformation
  train_step: dict  # time length -> compiled step, as trainer.compile_steps returns them
  eval_step: dict
  probe: object  # gradient_probe(net), jitted: it compiles on its first call
  place: parallel.Placement  # one device, as the trainer without --mesh
  compile_seconds: float


_NETWORKS = {}  # (configuration without the seed, training reviews) -> Network


def build_network(cfg, n_train):
  net = model.classifier(cfg["vocab"], cfg["embed"], cfg["cell"], cfg["hidden"],
                         dropout=cfg["dropout"], pooling=cfg["pooling"],
                         residual=cfg["residual"], time_loop=cfg.get("time_loop", "scan"))
  tx = drnn.optimizer(trainer.learning_rate(cfg, n_train), max_norm=cfg["clip"] or None)
  place = parallel.placement(cfg)
  t_compile = time.perf_counter()
  shapes = trainer.fresh_run(net, tx, 0, place)  # only the shapes of its arrays matter
  train_step, eval_step = trainer.compile_steps(net, tx, None, shapes, cfg, place)
  return Network(net, tx, train_step, eval_step, gradient_probe(net), place,
                 time.perf_counter() - t_compile)


def network(cfg, n_train):
  """The Network of `cfg`, and whether it was built now: it is built and compiled once
  per process for all the seeds of a point (the seed changes the numbers, not the
  programs)."""
  key = (tuple(sorted((k, v) for k, v in cfg.items() if k != "seed")), n_train)
  built = key not in _NETWORKS
  if built:
    _NETWORKS[key] = build_network(cfg, n_train)
  return _NETWORKS[key], built


def gradient_probe(net):
  """A jitted `probe(params, batch) -> (state norms [L], param norms [L], loss)`.

  `drnn.diagnostics.state_gradient_norms` differentiates the classifier's own loss
  (evaluation mode), written as a function of the stack's outputs: the dense layer on
  the output at each review's last token. A state norm is the mean over the time steps
  of ||dLoss/dh_t^l||; a param norm is ||dLoss/d(layer l's weights)||.
  """

  def probe(params, batch):
    def loss_fn(ys):  # [B, T, H] -> the classifier's loss
      h = model._last_output(ys, batch["lengths"])  # the top carry, or with it the skip sum
      logits = (h @ params["dense"]["w"] + params["dense"]["b"])[:, 0]
      return drnn.sigmoid_binary_loss(logits, batch["labels"], batch["weights"])[0]

    xs = params["embed"][batch["tokens"]]  # [B, T, E]
    r = drnn.diagnostics.state_gradient_norms(net.rnn, params["rnn"], xs, loss_fn,
                                              lengths=batch["lengths"])
    # steps past every review's end have no gradient: leave them out of the mean
    steps = jnp.arange(xs.shape[1]) < batch["lengths"].max()  # [T]
    mean = jnp.where(steps, r.state, 0).sum(axis=1) / steps.sum().astype(r.state.dtype)
    return mean, r.params, r.loss

  return jax.jit(probe)


def probe_batch(data, s):
  """The fixed batch the gradients are measured on: the first training reviews."""
  n = min(s["probe_rows"], len(data.train.labels))
  return input_pipeline.batch(data.train, np.arange(n), n)


def run_config(point, s):
  """The trainer's configuration for one point."""
  reg = point["regularised"]
  return {**configs.DEFAULTS, **{k: s[k] for k in s if k in configs.DEFAULTS},
          "cell": point["cell"], "hidden": (point["width"],) * point["depth"],
          "dropout": s["dropout"] if reg else 0.0,
          "residual": reg and REGULARISERS[s.get("regulariser", "dropout+residual")],
          "seed": point["seed"],
          "out": None}


def train_point(point, data, s):
  """Trains one point with the trainer's functions; returns its row for the file.
  Raises trainer.NonFinite if the loss diverges, trainer.Interrupted on Ctrl-C."""
  t_run = time.perf_counter()
  cfg = run_config(point, s)
  nw, built = network(cfg, len(data.train.labels))
  compile_s = nw.compile_seconds if built else 0.0  # 0: an earlier seed compiled it
  net, probe = nw.net, nw.probe
  run = trainer.fresh_run(net, nw.tx, cfg["seed"], nw.place)
  batch = probe_batch(data, s)
  t_probe = time.perf_counter()
  init = jax.device_get(probe(run["state"]["params"], batch))  # before any donation
  probe_s = time.perf_counter() - t_probe
  trainer.fit(run, cfg, data, nw.train_step, nw.eval_step, origin=None, place=nw.place)
  t_probe = time.perf_counter()
  end = jax.device_get(probe(run["state"]["params"], batch))  # the last epoch's
  probe_s += time.perf_counter() - t_probe
  params = trainer.selected_params(run, cfg)  # the best validation epoch's
  test = trainer.evaluate(nw.eval_step, params, data.test, cfg, nw.place)
  sample = data.train.take(np.arange(min(len(data.val.labels), len(data.train.labels))))
  train = trainer.evaluate(nw.eval_step, params, sample, cfg, nw.place)
  best = run["history"][run["best"]["epoch"] - 1]
  return {
      **point, "hidden": list(cfg["hidden"]), "dropout": cfg["dropout"],
      "residual": cfg["residual"], "status": "ok",
      "params": drnn.count_params(params), "rnn_params": drnn.count_params(params["rnn"]),
      "n_train": len(data.train.labels), "n_val": len(data.val.labels),
      "n_test": len(data.test.labels), "best_epoch": best["epoch"],
      "best_val_accuracy": best["val_accuracy"], "test_accuracy": test["accuracy"],
      "test_loss": test["loss"], "train_accuracy": train["accuracy"],
      "train_accuracy_running": best["accuracy"],
      "gap": train["accuracy"] - best["val_accuracy"],
      "gap_running": best["accuracy"] - best["val_accuracy"],
      "seconds_per_epoch": float(np.mean([r["seconds"] for r in run["history"]])),
      "ms_per_step": float(np.mean([r["ms_per_step"] for r in run["history"]])),
      "compile_seconds": compile_s, "probe_seconds": probe_s,
      "history": [{k: r[k] for k in ("epoch", "loss", "accuracy", "val_loss",
                                     "val_accuracy", "seconds")} for r in run["history"]],
      **gradient_fields("init", init), **gradient_fields("end", end),
      "run_seconds": time.perf_counter() - t_run}


def gradient_fields(when, measured):
  state, params, loss = measured
  return {f"grad_state_{when}": [float(v) for v in state],
          f"grad_param_{when}": [float(v) for v in params],
          f"grad_ratio_{when}": float(state[0] / state[-1]),  # layer 0 over the top
          f"probe_loss_{when}": float(loss)}


def failed_row(point, s, error):
  """A run whose loss diverged: kept (a rerun would diverge the same way) and shown."""
  cfg = run_config(point, s)
  return {**point, "hidden": list(cfg["hidden"]), "dropout": cfg["dropout"],
          "residual": cfg["residual"], "status": "nonfinite", "error": str(error)}


def run_study(args, s, results, todo):
  """Trains the `todo` points, writing the file after each; returns an exit status."""
  data_dir = imdb_text.resolve_data_dir(args.data_dir)
  imdb_text.check_data_dir(data_dir)  # fail fast, before the slow reads
  results["settings"] = s
  results["sessions"].append({**provenance.collect(), "device": trainer.device_name()})
  t_load = time.perf_counter()
  pool = load_pool(data_dir, s)
  print(f"IMDB from {data_dir}: {len(pool.train.labels)} train+validation, "
        f"{len(pool.test.labels)} test reviews ({time.perf_counter() - t_load:.1f}s); "
        f"{len(todo)} runs to do, {len(results['rows'])} already in {args.out}", flush=True)
  splits, t_start = {}, time.perf_counter()
  for i, point in enumerate(todo):
    name = " ".join(f"{k}={point[k]}" for k in KEY)
    print(f"[{i + 1}/{len(todo)}] {name}", flush=True)
    if point["seed"] not in splits:
      splits[point["seed"]] = split(pool, s["val_split"], point["seed"])
    try:
      row = train_point(point, splits[point["seed"]], s)
    except trainer.NonFinite as e:
      print(f"  diverged: {e}", flush=True)
      row = failed_row(point, s, e)
    except trainer.Interrupted as e:
      print(f"interrupted by {e}; {len(results['rows'])} rows are in {args.out}: rerun "
            f"the same command to continue", file=sys.stderr)
      return EXIT_INTERRUPTED
    row.update(session=len(results["sessions"]) - 1,
               finished_utc=datetime.datetime.now(datetime.timezone.utc)
               .isoformat(timespec="seconds"))
    results["rows"].append(row)
    write_results(args.out, results)
    left = (time.perf_counter() - t_start) / (i + 1) * (len(todo) - i - 1)
    if row["status"] == "ok":
      print(f"  test {row['test_accuracy']:.4f}, best val {row['best_val_accuracy']:.4f} "
            f"(epoch {row['best_epoch']}), gap {row['gap']:+.4f}, "
            f"{row['seconds_per_epoch']:.1f} s/epoch, grad layer 0/top "
            f"{row['grad_ratio_init']:.3g} -> {row['grad_ratio_end']:.3g}; "
            f"about {left / 60:.0f} min left at this pace", flush=True)
  return 0


# ---------------------------------------------------------------- main

def show(results, args):
  """--plot-only and --summary: what the file holds, nothing trained."""
  if args.plot_only:
    print("wrote " + ", ".join(plot(results, args.out)))
  if args.summary:
    print(summary(results))
  return 0


def study(results, args):
  """Trains the points of the grid that the file lacks; then plots and summarises."""
  s = settings(args)
  check_settings(results, s, args.out)
  done = {key(r) for r in results["rows"]}
  todo = [p for p in points(args) if key(p) not in done]
  if not todo:
    print(f"nothing to do: all {len(points(args))} runs asked for are in {args.out} "
          f"(--plot-only redraws the plots)")
    return 0
  allocator.keep_freed_memory()  # the trainer's setting; see examples/common/allocator.py
  status = run_study(args, s, results, todo)
  if not status:
    print("wrote " + ", ".join(plot(results, args.out)))
    print(summary(results))
  return status


def main(argv=None):
  args = parse_args(argv)
  try:
    results = read_results(args.out)
    return show(results, args) if args.plot_only or args.summary else study(results, args)
  except (StudyError, imdb_text.DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_ERROR
  except KeyboardInterrupt:  # outside an epoch (compiling, testing): that run is redone
    print(f"interrupted; the finished runs are in {args.out}: rerun the same command to "
          f"continue", file=sys.stderr)
    return EXIT_INTERRUPTED


if __name__ == "__main__":
  sys.exit(main())
