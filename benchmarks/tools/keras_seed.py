"""Is our trainer as fast and as accurate as Keras 3 (JAX backend) on the seed's own model?

    python benchmarks/tools/keras_seed.py --json benchmarks/results/keras-seed-cpu.json \
        --md benchmarks/results/keras-seed-cpu.md

For each cell (LSTM, GRU) and each round, two commands run one after the other, each in
a fresh process on an otherwise quiet machine:
- ours: `python -m examples.imdb.main --cell CELL --epochs 5 --out DIR` (the seed
  preset: Embedding(10000, 32), two layers of 5 units, Dense(1), maxlen 100, Adam 1e-3,
  batch 32);
- keras: this file with `--keras CELL`: the seed's Sequential model (Embedding(10000, 32),
  LSTM(5, return_sequences=True), LSTM(5), Dense(1, sigmoid); `compile("adam",
  "binary_crossentropy")`, `fit(epochs=5, batch_size=32)`) on Keras 3's JAX backend,
  reading the same reviews through the trainer's input pipeline (the same vocabulary, the
  same train/validation split), left-padded as Keras' `pad_sequences` pads.
Recorded per run: the whole command's wall time (this parent's clock around the
subprocess), seconds per epoch (training + validation; Keras compiles inside its first
epoch, our trainer ahead of time, so epochs 2-5 are the like-for-like figure), and test
accuracy. The CPU is named in the results. By default neither side has a persistent
compilation cache and no cache of the encoded reviews (ours runs with `--compile-cache off
--data-cache off`): every command reads, encodes and compiles, as a first run does.
`--caches DIR` gives both sides both caches, so that rounds after the first show a
repeated command.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))  # the checkout
TRAINER = ["-m", "examples.imdb.main"]  # run from ROOT
EPOCHS = 5


def left_padded(reviews, maxlen):
  """Our right-padded tokens [n, maxlen] as `pad_sequences` pads them: zeros first."""
  import numpy as np
  n = len(reviews.lengths)
  shift = (maxlen - reviews.lengths)[:, None]  # [n, 1]
  cols = (np.arange(maxlen)[None, :] - shift) % maxlen  # [n, maxlen]: source column
  return reviews.tokens[np.arange(n)[:, None], cols]


def keras_run(cell, data_cache=None):
  """Trains the seed's Keras model (reviews from `data_cache` when given, see
  examples/imdb/data_cache.py); prints one JSON line of its figures."""
  os.environ["KERAS_BACKEND"] = "jax"
  sys.path.insert(0, ROOT)
  import keras
  from examples.common import imdb_text
  from examples.imdb import input_pipeline

  data = input_pipeline.load(imdb_text.resolve_data_dir(None), 10000, 100, 0.2, 0,
                             cache_dir=data_cache)
  x, x_val, x_test = (left_padded(r, 100) for r in (data.train, data.val, data.test))
  layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
  model = keras.Sequential([keras.Input((100,), dtype="int32"),
                            keras.layers.Embedding(10000, 32),
                            layer(5, return_sequences=True), layer(5),
                            keras.layers.Dense(1, activation="sigmoid")])
  model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
  seconds = []

  class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      seconds.append(time.perf_counter() - self.t0)

  hist = model.fit(x, data.train.labels, epochs=EPOCHS, batch_size=32, verbose=2,
                   validation_data=(x_val, data.val.labels), callbacks=[Clock()])
  _, test_acc = model.evaluate(x_test, data.test.labels, batch_size=256, verbose=0)
  print(json.dumps({"epoch_seconds": seconds, "test_accuracy": float(test_acc),
                    "val_accuracy": [float(a) for a in hist.history["val_accuracy"]],
                    "keras": keras.__version__}))


def timed(cmd, env=None):
  """Runs `cmd` (in `env`, else ours); (wall seconds, stdout). Raises with the output if
  it fails."""
  t0 = time.perf_counter()
  p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
  wall = time.perf_counter() - t0
  if p.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
  return wall, p.stdout


def cache_env(cache, impl):
  """The environment of one impl's process: JAX's persistent compilation cache in
  cache/impl when `cache` is given (both impls read $JAX_COMPILATION_CACHE_DIR: Keras
  through JAX, our trainer's --compile-cache auto), else none for either. The encoded
  reviews go to cache/data, shared: both read them through the trainer's pipeline."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")
         and k != "JAX_COMPILATION_CACHE_DIR"}
  if cache:
    env.update(JAX_COMPILATION_CACHE_DIR=os.path.join(cache, impl),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.1")
  return env


def one_round(cell, cache=None):
  """One run of ours, then one of Keras: their rows."""
  with tempfile.TemporaryDirectory() as out:
    data = os.path.join(cache, "data") if cache else "off"
    wall, _ = timed([sys.executable, *TRAINER, "--cell", cell, "--epochs", str(EPOCHS),
                     "--out", out, "--compile-cache", "auto" if cache else "off",
                     "--data-cache", data], cache_env(cache, "deeprnn_jax"))
    with open(os.path.join(out, "metrics.json")) as f:
      m = json.load(f)
  ours = {"impl": "deeprnn_jax", "cell": cell, "wall_seconds": wall,
          "epoch_seconds": [h["seconds"] for h in m["history"]],
          "test_accuracy": m["test"]["accuracy"],
          "test_accuracy_last_epoch": m["test_last_epoch"]["accuracy"],
          "val_accuracy": [h["val_accuracy"] for h in m["history"]]}
  wall, stdout = timed([sys.executable, __file__, "--keras", cell,
                        *(["--caches", cache] if cache else [])], cache_env(cache, "keras"))
  k = json.loads(stdout.strip().splitlines()[-1])
  keras_row = {"impl": "keras", "cell": cell, "wall_seconds": wall, **k,
               "test_accuracy_last_epoch": k["test_accuracy"]}
  return [ours, keras_row]


def cpu_name():
  with open("/proc/cpuinfo") as f:
    for line in f:
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor() or "cpu"


def mean(xs):
  return sum(xs) / len(xs)


def markdown(result):
  rows = result["rows"]
  cache = ("both with JAX's persistent compilation cache and the encoded reviews cached "
           "(round 1 fills them, later rounds load from them)" if result.get("caches")
           else "no caches: every command reads, encodes and compiles")
  lines = [f"Seed model, ours vs Keras {rows[-1].get('keras', '')} (JAX backend), "
           f"{result['cpu']} ({result['cores']} cores), {result['date']}, "
           f"{result['rounds']} rounds, {cache}; `python benchmarks/tools/keras_seed.py`.", "",
           "| cell | impl | whole command s | epoch 1 s | epochs 2-5 s (mean) | "
           "test acc | test acc, last epoch |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    e = r["epoch_seconds"]
    lines.append(f"| {r['cell'].upper()} | {r['impl']} | {r['wall_seconds']:.1f} | {e[0]:.2f} "
                 f"| {mean(e[1:]):.2f} | {r['test_accuracy']:.4f} | "
                 f"{r['test_accuracy_last_epoch']:.4f} |")
  lines += ["", "| cell | Keras / ours, whole command (median of rounds) | Keras / ours, "
            "epochs 2-5 | whole command, by round | epochs 2-5, by round |",
            "| --- | --- | --- | --- | --- |"]
  for cell in result["cells"]:
    ratios = {"wall": [], "epoch": []}
    for rnd in range(result["rounds"]):
      pair = [r for r in rows if r["cell"] == cell and r["round"] == rnd]
      o, k = (next(r for r in pair if r["impl"] == i) for i in ("deeprnn_jax", "keras"))
      ratios["wall"].append(k["wall_seconds"] / o["wall_seconds"])
      ratios["epoch"].append(mean(k["epoch_seconds"][1:]) / mean(o["epoch_seconds"][1:]))
    med = {key: sorted(v)[len(v) // 2] for key, v in ratios.items()}
    by_round = {key: ", ".join(f"{x:.2f}x" for x in v) for key, v in ratios.items()}
    lines.append(f"| {cell.upper()} | {med['wall']:.2f}x | {med['epoch']:.2f}x | "
                 f"{by_round['wall']} | {by_round['epoch']} |")
  lines.append("\n(> 1: ours is faster.)")
  return "\n".join(lines) + "\n"


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--keras", choices=("lstm", "gru"), help=argparse.SUPPRESS)
  ap.add_argument("--cells", default="lstm,gru")
  ap.add_argument("--rounds", type=int, default=2)
  ap.add_argument("--json")
  ap.add_argument("--md")
  ap.add_argument("--caches", metavar="DIR",
                  help="give both impls JAX's persistent compilation cache (DIR/<impl>) and "
                       "the encoded reviews' cache (DIR/data): a round after the first loads "
                       "both (default: no caches, every round reads, encodes and compiles)")
  args = ap.parse_args()
  if args.keras:
    return keras_run(args.keras, args.caches and os.path.join(args.caches, "data"))
  cells = args.cells.split(",")
  rows = []
  for rnd in range(args.rounds):
    for cell in cells:
      for row in one_round(cell, args.caches):
        rows.append({**row, "round": rnd})
        print(json.dumps(rows[-1]), flush=True)
  git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT).stdout
  result = {"cpu": cpu_name(), "cores": os.cpu_count(), "rounds": args.rounds,
            "commit": git("rev-parse", "HEAD").strip(),
            "clean_tree": not git("status", "--porcelain", "--untracked-files=no").strip(),
            "cells": cells, "date": time.strftime("%Y-%m-%d"), "rows": rows,
            "caches": bool(args.caches)}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
  text = markdown(result)
  print(text)
  if args.md:
    with open(args.md, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
