"""The IMDB trainer's loop: build or restore a run, compile, train, validate, test, export.

`train_and_evaluate(cfg, explicit, argv)` is the whole run (main.py calls it with the
parsed flags). Every run writes cfg["out"]/metrics.json, curves.png and an atomic
checkpoint (orbax, in out/checkpoints; examples/common/checkpoint.py) after every epoch and
every `--ckpt-every` steps; Ctrl-C or SIGTERM saves one before exiting, and a non-finite
loss or gradient stops the run naming the step, keeping the last good checkpoint. A run
whose out dir holds a checkpoint continues from it, with the same data order and PRNG
state, and ends with the same parameters and metrics as an uninterrupted run.
`--export PATH` writes the tested params' inference function as a serialized
`jax.export.Exported` (export.py), loadable with JAX alone. Compiled steps are kept in a
persistent XLA cache (`--compile-cache`), and the encoded reviews in a cache of their own
(`--data-cache`, data_cache.py).
"""

import contextlib
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import deeprnn_jax as drnn
from deeprnn_jax import diagnostics
from examples.common import allocator
from examples.common import checkpoint
from examples.common import cli
from examples.common import compile_cache
from examples.common import imdb_text
from examples.common import provenance
from examples.imdb import configs
from examples.imdb import data_cache
from examples.imdb import export
from examples.imdb import input_pipeline
from examples.imdb import model
from examples.imdb import parallel

EXIT_ERROR, EXIT_NONFINITE, EXIT_INTERRUPTED = 2, 3, 130


class NonFinite(Exception):
  pass


class Interrupted(Exception):
  pass


def resume_config(out, explicit):
  """The checkpoint's configuration, overridden by the flags given now; refuses flags that
  would change the model or the data the checkpoint was trained on."""
  saved = checkpoint.read_meta(out)["config"]
  saved["hidden"] = tuple(saved["hidden"])  # JSON gave a list
  saved = {**configs.DEFAULTS, **saved}  # a checkpoint from before a flag: its default
  # where and how to run concerns this launch, not the run: never the checkpoint's
  saved.update({k: configs.DEFAULTS[k] for k in configs.MACHINE})
  changed = [f"--{k.replace('_', '-')} (checkpoint: {saved[k]!r}, now: {explicit[k]!r})"
             for k in configs.FROZEN if k in explicit and explicit[k] != saved[k]]
  if changed:
    raise checkpoint.CheckpointError(
        f"the checkpoint in {out} was written with a different model or data configuration: "
        f"{'; '.join(changed)}. Continue without these flags, or use another --out")
  # defaults first: a checkpoint from before a flag existed resumes with its default
  return {**configs.DEFAULTS, **saved, **explicit, "out": out, "resume": True}


def grad_norms_fn(net):
  """Per-layer gradient norms (embedding, each recurrent layer, dense), for --log-grad-norms."""

  def fn(grads):
    rnn = diagnostics.param_gradient_norms(net.rnn, grads["rnn"])
    norms = {"grad_norm/embed": optax.tree.norm(grads["embed"]),
             "grad_norm/dense": optax.tree.norm(grads["dense"])}
    norms.update({f"grad_norm/rnn_{l}": rnn[l] for l in range(rnn.shape[0])})
    return norms

  return fn


def learning_rate(cfg, n_train):
  """--lr, constant or decayed to 0 over the run's steps by a cosine (--schedule cosine)."""
  if cfg["schedule"] == "constant":
    return cfg["lr"]
  steps = cfg["epochs"] * input_pipeline.num_batches(n_train, cfg["batch_size"])
  return optax.cosine_decay_schedule(cfg["lr"], steps)


def device_copy(tree):
  """A copy in new device buffers, which outlives those the train step donates; where the
  arrays are, so that sharded params are never gathered on one host."""
  return jax.tree.map(jnp.copy, tree)


def fresh_run(net, tx, seed, place=parallel.ONE_DEVICE):
  k_init, k_steps = jax.random.split(jax.random.key(seed))
  params = jax.jit(net.init)(k_init)  # one compilation, not one per initialiser op
  state = place.state({"params": params, "opt_state": tx.init(params)})
  # best_params: those of the epoch with the best validation accuracy so far (a copy:
  # the live params are donated to each step); in every checkpoint, so never stale
  return {"state": {**state, "best_params": device_copy(state["params"])},
          "rng": np.asarray(jax.random.key_data(k_steps)).tolist(),
          "epoch": 0, "step": 0, "global_step": 0, "sums": {}, "history": [], "best": None}


def restore_run(out, net, tx, seed, place=parallel.ONE_DEVICE):
  """The run of the latest checkpoint in `out`, its arrays placed as freshly built ones
  (on this run's devices, however many the checkpoint was written from)."""
  like = fresh_run(net, tx, seed, place)
  state, meta = checkpoint.restore(out, like["state"])
  return {**{k: meta[k] for k in like if k != "state"}, "state": state}


def save_run(out, run, cfg):
  """Checkpoints the whole run, as the checkpoint of its global step: arrays, position in
  the data, PRNG, sums, history, config. Nothing without `out` (a study's runs)."""
  if out:
    meta = {k: v for k, v in run.items() if k != "state"}
    saved_cfg = {k: v for k, v in cfg.items() if k != "resume"}
    checkpoint.save(out, run["global_step"], run["state"], {**meta, "config": saved_cfg})


def accumulate(sums, m, seconds):
  """Adds one step's metrics to the epoch's running sums (host floats, exact on resume)."""
  w = float(m["weight"])
  sums["weight"] = sums.get("weight", 0.0) + w
  sums["steps"] = sums.get("steps", 0) + 1
  sums["seconds"] = sums.get("seconds", 0.0) + seconds
  sums["grad_norm_max"] = max(sums.get("grad_norm_max", 0.0), float(m["grad_norm"]))
  for k, v in m.items():
    if k in ("loss", "accuracy"):
      sums[k] = sums.get(k, 0.0) + float(v) * w
    elif k.startswith("grad_norm"):
      sums[k] = sums.get(k, 0.0) + float(v)


def step_keys(key, first, last):
  """The PRNG keys of global steps first..last (as raw key data, [steps, 2]): one
  computation per epoch instead of one per step, equal to `fold_in(key, step)` each."""
  steps = jnp.arange(first, last + 1, dtype=jnp.uint32)
  return np.asarray(jax.random.key_data(jax.vmap(lambda s: jax.random.fold_in(key, s))(steps)))


def record(run, pending, n_batches, t0, place):
  """Reads the metrics of a dispatched step (waiting for it) into the epoch's sums;
  raises NonFinite for a non-finite loss or gradient norm. Returns the time read."""
  step, batch_no, m = pending
  m = place.host(m)
  if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
    raise NonFinite(f"non-finite loss ({float(m['loss'])}) or gradient norm "
                    f"({float(m['grad_norm'])}) at step {step} (epoch {run['epoch'] + 1}, "
                    f"batch {batch_no}/{n_batches})")
  now = time.perf_counter()
  accumulate(run["sums"], m, now - t0)
  return now


def train_epoch(run, cfg, data, train_step, stop, place=parallel.ONE_DEVICE):
  """Runs the rest of epoch `run["epoch"]` from batch `run["step"]`; updates `run`.

  Each step's metrics are read one step late, after the next step is dispatched, so that
  the host builds and sends batch k + 1 while the device runs step k (reading them at
  once made host and device take turns). Before a checkpoint, a signal or the epoch's
  end the last step's metrics are read too, so sums and checkpoints are those of a
  step-by-step loop; a non-finite step is still reported with its own number."""
  epoch, n_batches = run["epoch"], input_pipeline.num_batches(len(data.train.labels),
                                                              cfg["batch_size"])
  index = input_pipeline.epoch_batches(data.train.lengths, cfg["batch_size"], cfg["seed"],
                                       epoch, cfg["bucket"])
  key = jax.random.wrap_key_data(np.asarray(run["rng"], np.uint32))
  first = run["global_step"] + 1
  keys = step_keys(key, first, run["global_step"] + n_batches - run["step"])
  bar = tqdm(total=n_batches, initial=run["step"], desc=f"epoch {epoch + 1}", leave=False,
             disable=None if place.is_main else True, dynamic_ncols=True)
  t0, pending = time.perf_counter(), None
  for b in range(run["step"], n_batches):
    batch = input_pipeline.batch(data.train, index[b], cfg["batch_size"], cfg["bucket"])
    step = run["global_step"] + 1
    batch = place.batch(batch)
    state = run["state"]
    state["params"], state["opt_state"], m = train_step[batch["tokens"].shape[1]](
        state["params"], state["opt_state"], batch, place.key_data(keys[step - first]))
    if pending is not None:
      t0 = record(run, pending, n_batches, t0, place)
    pending = (step, b + 1, m)
    run["step"], run["global_step"] = run["step"] + 1, step
    bar.update()
    if run["step"] % 20 == 0:
      bar.set_postfix(loss=f"{run['sums']['loss'] / run['sums']['weight']:.4f}")
    if cfg["ckpt_every"] and step % cfg["ckpt_every"] == 0 and run["step"] < n_batches:
      t0, pending = record(run, pending, n_batches, t0, place), None
      save_run(cfg["out"], run, cfg)
    # a signal after the epoch's last batch: fit() ends the epoch first, so that its one
    # checkpoint of this global step is the epoch's
    if stop["signal"] and run["step"] < n_batches:
      if pending is not None:
        record(run, pending, n_batches, t0, place)
      bar.close()
      raise Interrupted(f"{stop['signal']} at step {step} (epoch {epoch + 1}, batch "
                        f"{run['step']}/{n_batches})")
  if pending is not None:
    record(run, pending, n_batches, t0, place)
  bar.close()


def evaluate(eval_step, params, reviews, cfg, place=parallel.ONE_DEVICE):
  """Loss and accuracy over all `reviews` (each counted once)."""
  total = {"loss": 0.0, "accuracy": 0.0, "weight": 0.0}
  order = np.argsort(reviews.lengths, kind="stable") if cfg["bucket"] else None
  # every batch dispatched before any is read: the host never waits between batches
  ms = [eval_step[batch["tokens"].shape[1]](params, place.batch(batch))
        for batch in input_pipeline.batches(reviews, cfg["eval_batch_size"], order,
                                            bucket_width=cfg["bucket"])]
  for m in place.host(ms):
    w = float(m["weight"])
    total["weight"] += w
    total["loss"] += float(m["loss"]) * w
    total["accuracy"] += float(m["accuracy"]) * w
  return {"loss": total["loss"] / total["weight"], "accuracy": total["accuracy"] / total["weight"]}


def epoch_record(run, val, val_seconds):
  """The epoch's line of history; seconds = training + validation, as Keras counts."""
  s = run["sums"]
  record = {"epoch": run["epoch"] + 1, "loss": s["loss"] / s["weight"],
            "accuracy": s["accuracy"] / s["weight"], "val_loss": val["loss"],
            "val_accuracy": val["accuracy"], "seconds": s["seconds"] + val_seconds,
            "ms_per_step": 1000 * s["seconds"] / s["steps"], "steps": s["steps"],
            "grad_norm": s["grad_norm"] / s["steps"], "grad_norm_max": s["grad_norm_max"]}
  layers = {k.split("/")[1]: v / s["steps"] for k, v in s.items() if k.startswith("grad_norm/")}
  if layers:
    record["grad_norms"] = layers
  return record


def epoch_line(r, n_batches):
  line = (f"{n_batches}/{n_batches} - {r['seconds']:.0f}s - {r['ms_per_step']:.0f}ms/step - "
          f"loss: {r['loss']:.4f} - accuracy: {r['accuracy']:.4f} - "
          f"val_loss: {r['val_loss']:.4f} - val_accuracy: {r['val_accuracy']:.4f}")
  if "grad_norms" in r:
    line += "\n  gradient norms (epoch mean): " + " | ".join(
        f"{k} {v:.3g}" for k, v in r["grad_norms"].items())
  return line


def device_name(place=None):
  d = jax.devices()[0]
  where = "" if place is None or place.mesh is None else \
      f", batches split over {place.mesh.size} ({jax.process_count()} process(es))"
  return f"{d.platform} ({d.device_kind}), {jax.device_count()} device(s){where}, " \
         f"{os.cpu_count()} CPU cores visible"


PLOT_EVERY_EPOCH_S = 30  # epochs at least this long redraw the curves (~0.7 s a drawing)


def write_outputs(cfg, run, tests=(None, None), origin=None, plot=True):
  """metrics.json (the test metrics once known) and, if `plot`, the learning curves;
  `origin`: the provenance of this process, which wrote the file. Only process 0 writes
  them."""
  if not cfg["out"] or jax.process_index() != 0:
    return
  os.makedirs(cfg["out"], exist_ok=True)
  metrics = {"config": cfg, "history": run["history"], "test": tests[0],
             "test_last_epoch": tests[1], "best": run["best"], "device": device_name(),
             "steps": run["global_step"], "jax": jax.__version__, "provenance": origin}
  tmp = os.path.join(cfg["out"], ".metrics.json.tmp")
  with open(tmp, "w") as f:
    json.dump(metrics, f, indent=1)
  os.replace(tmp, os.path.join(cfg["out"], "metrics.json"))
  if plot and run["history"]:
    plot_curves(run["history"], os.path.join(cfg["out"], "curves.png"), cfg)


def plot_curves(history, path, cfg):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  epochs = [r["epoch"] for r in history]
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
  for ax, name in zip(axes, ("loss", "accuracy")):
    ax.plot(epochs, [r[name] for r in history], "o-", label="train")
    ax.plot(epochs, [r["val_" + name] for r in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_title(name)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.suptitle(f"IMDB, {cfg['cell'].upper()} {','.join(map(str, cfg['hidden']))}, "
               f"maxlen {cfg['maxlen']}, vocab {cfg['vocab']}")
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def compile_steps(net, tx, grad_metrics, run, cfg, place=parallel.ONE_DEVICE):
  """Jits and compiles the train step (parameter and optimizer buffers donated) and the
  eval step ahead of time, once per batch length, so that epoch times do not include
  compilation. Returns two dicts: time length -> compiled step."""
  step = drnn.make_train_step(net.loss, tx, grad_metrics=grad_metrics)
  # the key as raw data: a replicated array is what every process can pass in
  train_step = jax.jit(lambda p, o, b, k: step(p, o, b, jax.random.wrap_key_data(k)),
                       donate_argnums=(0, 1))
  eval_step = jax.jit(drnn.make_eval_step(net.loss))
  params, opt_state = run["state"]["params"], run["state"]["opt_state"]
  key = place.like(jax.random.key_data(jax.random.key(0)).shape, np.uint32, batched=False)

  def like(batch_size, time):
    return {"tokens": place.like((batch_size, time), np.int32),
            "lengths": place.like((batch_size,), np.int32),
            "labels": place.like((batch_size,), np.int32),
            "weights": place.like((batch_size,), np.float32)}

  lengths = input_pipeline.bucket_lengths(cfg["maxlen"], cfg["bucket"])
  return ({t: train_step.lower(params, opt_state, like(cfg["batch_size"], t), key).compile()
           for t in lengths},
          {t: eval_step.lower(params, like(cfg["eval_batch_size"], t)).compile()
           for t in lengths})


def selected_params(run, cfg):
  """The params `--select` picks: those of the best validation epoch, or the last."""
  if cfg["select"] == "best" and run["best"]["epoch"] != run["epoch"]:
    return run["state"]["best_params"]
  return run["state"]["params"]


def build_classifier(cfg, time_loop=None):
  """The configuration's classifier; `time_loop` overrides --time-loop."""
  return model.classifier(cfg["vocab"], cfg["embed"], cfg["cell"], cfg["hidden"],
                          dropout=cfg["dropout"], pooling=cfg["pooling"],
                          residual=cfg["residual"],
                          time_loop=time_loop or cfg.get("time_loop", "scan"))


def export_model(net, run, cfg, vocab, place=parallel.ONE_DEVICE):
  """Writes the selected params' inference function to --export (and its vocabulary).
  The exported function runs the scan: it is portable (the fused CPU loop is a custom
  call of this machine's kernel) and takes any batch size and length (symbolic shapes);
  the numbers are the same."""
  net = build_classifier(cfg, time_loop="scan")
  export.export_classifier(net, place.host(selected_params(run, cfg)), cfg["maxlen"],
                           cfg["export"], vocab=vocab)
  print(f"exported the inference function to {cfg['export']} (vocabulary: "
        f"{cfg['export']}{export.VOCAB_SUFFIX}); load it with jax.export.deserialize")


def test_metrics(run, cfg, data, eval_step, place=parallel.ONE_DEVICE):
  """Test loss and accuracy of the params `--select` picks (by default those of the epoch
  with the best validation accuracy), and of the last epoch's."""
  last_epoch = run["epoch"]
  on_test = lambda params: evaluate(eval_step, params, data.test, cfg, place)
  last = {**on_test(run["state"]["params"]), "epoch": last_epoch}
  best = last
  if run["best"]["epoch"] != last_epoch:
    best = {**on_test(run["state"]["best_params"]),
            "epoch": run["best"]["epoch"]}
  test = best if cfg["select"] == "best" else last
  for name, m in (("best validation epoch", best), ("last epoch", last)):
    print(f"test ({len(data.test.labels)} reviews), {name} ({m['epoch']}) - "
          f"loss: {m['loss']:.4f} - accuracy: {m['accuracy']:.4f}")
  return {**test, "selected": cfg["select"]}, last


def fit(run, cfg, data, train_step, eval_step, origin, place=parallel.ONE_DEVICE):
  """Trains until `cfg["epochs"]`, checkpointing each epoch; on SIGINT or SIGTERM saves
  a checkpoint (mid-epoch if need be) and raises Interrupted. `origin`: provenance."""
  stop = {"signal": None}
  previous = cli.on_signals(stop)
  n_batches = input_pipeline.num_batches(len(data.train.labels), cfg["batch_size"])
  try:
    while run["epoch"] < cfg["epochs"]:
      print(f"Epoch {run['epoch'] + 1}/{cfg['epochs']}")
      try:
        train_epoch(run, cfg, data, train_step, stop, place)
      except Interrupted:
        save_run(cfg["out"], run, cfg)
        write_outputs(cfg, run, origin=origin)
        raise
      t_val = time.perf_counter()
      val = evaluate(eval_step, run["state"]["params"], data.val, cfg, place)
      run["history"].append(epoch_record(run, val, time.perf_counter() - t_val))
      print(epoch_line(run["history"][-1], n_batches), flush=True)
      if run["best"] is None or val["accuracy"] > run["best"]["val_accuracy"]:
        run["best"] = {"epoch": run["epoch"] + 1, "val_accuracy": val["accuracy"]}
        run["state"]["best_params"] = device_copy(run["state"]["params"])
      run.update(epoch=run["epoch"] + 1, step=0, sums={})
      save_run(cfg["out"], run, cfg)
      # the curves of short epochs are drawn once, at the end (drawing them each time
      # took a sixth of the seed model's epoch)
      write_outputs(cfg, run, origin=origin,
                    plot=run["history"][-1]["seconds"] >= PLOT_EVERY_EPOCH_S)
      if stop["signal"]:  # it came during validation: the epoch's checkpoint is saved
        raise Interrupted(f"{stop['signal']} at the end of epoch {run['epoch']}")
  finally:
    cli.restore_signals(previous)


def train_and_evaluate(cfg, explicit, argv):
  """The whole run of configuration `cfg` (`explicit`: the settings given on the command
  line, `argv`: the command line, for the provenance)."""
  allocator.keep_freed_memory()  # keeps XLA's per-step buffers in the process; see allocator.py
  parallel.initialize(cfg)  # before anything starts JAX's backends (orbax included)
  # the same --out continues a run or starts it: a preempted job is relaunched as is
  resuming = checkpoint.latest(cfg["out"]) is not None
  if resuming or cfg["resume"]:  # --resume: a checkpoint is required (an error if none)
    cfg = resume_config(cfg["out"], explicit)
  data_dir = imdb_text.resolve_data_dir(cfg["data_dir"])
  # whether and whence to download concerns this machine, not the run: the flags given
  # now decide, not a checkpoint's (a run relaunched on a fresh machine downloads too)
  fetch = {**configs.DEFAULTS, **explicit}
  imdb_text.ensure(data_dir, fetch["download"], fetch["download_url"])  # before slow reads
  # taken at the start: the code and command that this process trains with
  origin = provenance.collect(argv)
  n_train, load_data = start_reading(cfg, data_dir)
  net = build_classifier(cfg)
  tx = drnn.optimizer(learning_rate(cfg, n_train), max_norm=cfg["clip"] or None)
  place = parallel.placement(cfg)
  if place.is_main:
    print(f"{'continuing the run in' if resuming else 'writing metrics, curves and checkpoints to'} "
          f"{cfg['out']}", flush=True)
  with (compile_cache.enabled(cfg["compile_cache"]) as cache,
        contextlib.nullcontext() if place.mesh is None else jax.set_mesh(place.mesh)):
    train(cfg, resuming, load_data, net, tx, origin, place, cache)
  if place.is_main:
    print(f"metrics: {os.path.join(cfg['out'], 'metrics.json')}, curves: "
          f"{os.path.join(cfg['out'], 'curves.png')}, checkpoints: {checkpoint.path(cfg['out'])}")


def start_reading(cfg, data_dir):
  """Starts reading IMDB beside the compilation (in a process of its own, when the data
  cache is on and holds no entry yet: `input_pipeline.read_in_background`). Returns the
  number of training reviews (the learning-rate schedule needs it before the data) and
  a function that waits for the reviews and returns them."""
  cache_dir = data_cache.resolve(cfg["data_cache"])
  settings = {"vocab_size": cfg["vocab"], "maxlen": cfg["maxlen"],
              "limit_train": cfg["limit_train"], "limit_test": cfg["limit_test"]}
  reader = input_pipeline.read_in_background(data_dir, cache_dir, **settings)
  if reader is not None:
    print("reading IMDB in a process of its own while this one compiles")
  n = imdb_text.num_reviews(data_dir, "train", cfg["limit_train"])
  n_train = input_pipeline.split_sizes(n, cfg["val_split"])[0]

  def load_data():
    t_load = time.perf_counter()
    if reader is not None:
      reader.wait()
    data = input_pipeline.load(data_dir, val_split=cfg["val_split"], seed=cfg["seed"],
                               cache_dir=cache_dir, **settings)
    print(f"IMDB from {data_dir}: {len(data.train.labels)} train, {len(data.val.labels)} "
          f"validation, {len(data.test.labels)} test reviews, vocabulary {cfg['vocab']} "
          f"ids ({time.perf_counter() - t_load:.1f}s)")
    held = len(data.train.labels) + len(data.val.labels)
    if held != n:  # the schedule was built for n
      raise imdb_text.DataError(f"the train split's dataset_info.json counts {n} "
                                f"reviews, its files held {held}")
    return data

  return n_train, load_data


def train(cfg, resuming, load_data, net, tx, origin, place, cache=None):
  """Builds or restores the run, compiles, reads the data (`start_reading`'s function),
  trains, tests and exports."""
  counted = dict(compile_cache.counts)
  grad_metrics = grad_norms_fn(net) if cfg["log_grad_norms"] else None
  if resuming:
    run = restore_run(cfg["out"], net, tx, cfg["seed"], place)
  else:
    run = fresh_run(net, tx, cfg["seed"], place)
  t_compile = time.perf_counter()
  train_step, eval_step = compile_steps(net, tx, grad_metrics, run, cfg, place)
  print(f"{cfg['cell'].upper()} {cfg['hidden']}, {drnn.count_params(run['state']['params'])} "
        f"parameters; {device_name(place)}; compiled in "
        f"{time.perf_counter() - t_compile:.1f}s ({compile_cache.summary(cache, counted)}); "
        f"from epoch {run['epoch'] + 1}, global step {run['global_step']}")
  print(cli.time_loops(net.rnn), flush=True)
  data = load_data()
  fit(run, cfg, data, train_step, eval_step, origin, place)
  write_outputs(cfg, run, test_metrics(run, cfg, data, eval_step, place), origin)
  if cfg["export"] and place.is_main:
    export_model(net, run, cfg, data.vocab, place)


def last_good(out):
  """Where the last good checkpoint is, for the message after a failure."""
  step = checkpoint.latest(out)
  if step is None:
    return "no checkpoint had been written yet"
  meta = checkpoint.read_meta(out, step)
  return (f"the last good checkpoint ({checkpoint.step_path(out, step)}, global step "
          f"{meta['global_step']}: epoch {meta['epoch'] + 1}, batch {meta['step']}) is kept")
