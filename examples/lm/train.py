"""The language model's loop: build or restore a run, compile, train, validate, test, sample.

`train_and_evaluate(cfg, explicit, argv)` is the whole run (main.py calls it). One jitted
call trains `--chunks-per-call` truncated-BPTT chunks (`drnn.tbptt_train`, one Adam or SGD
update per chunk, the gradient clipped to `--clip`), the state carried across calls; the
run checkpoints after every epoch and on Ctrl-C or SIGTERM
(examples/common/checkpoint.py), and a run whose out dir holds a checkpoint continues.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import deeprnn_jax as drnn
from examples.common import checkpoint
from examples.common import cli
from examples.common import compile_cache
from examples.common import provenance
from examples.lm import configs
from examples.lm import input_pipeline
from examples.lm import model
from examples.lm import report
from examples.lm import sampling

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
  changed = [f"--{k.replace('_', '-')} (checkpoint: {saved[k]!r}, now: {explicit[k]!r})"
             for k in configs.FROZEN if k in explicit and explicit[k] != saved[k]]
  if changed:
    raise checkpoint.CheckpointError(
        f"the checkpoint in {out} was written with a different model or data configuration: "
        f"{'; '.join(changed)}. Continue without these flags, or use another --out")
  return {**configs.DEFAULTS, **saved, **explicit, "out": out, "resume": True}


def make_optimizer(cfg, steps_per_epoch):
  """Global-norm clipping, then Adam or SGD at --lr, constant or cosine-decayed to 0."""
  lr = cfg["lr"]
  if cfg["schedule"] == "cosine":
    lr = optax.cosine_decay_schedule(cfg["lr"], cfg["epochs"] * steps_per_epoch)
  base = {"adam": optax.adam, "sgd": optax.sgd}[cfg["optimizer"]]
  return drnn.optimizer(lr, max_norm=cfg["clip"] or None, base=base)


def fresh_run(lm, tx, cfg):
  k_init, k_steps = jax.random.split(jax.random.key(cfg["seed"]))
  params = lm.init(k_init)
  return {"state": {"params": params, "opt_state": tx.init(params),
                    "carry": lm.initial_state(cfg["batch_size"])},
          "rng": np.asarray(jax.random.key_data(k_steps)).tolist(),
          "epoch": 0, "segment": 0, "global_step": 0, "sums": {}, "history": [],
          "tokens_seen": 0, "curve": []}


def restore_run(out, lm, tx, cfg):
  """The run of the latest checkpoint in `out`, its arrays placed as freshly built ones."""
  like = fresh_run(lm, tx, cfg)
  state, meta = checkpoint.restore(out, like["state"])
  return {**{k: meta.get(k, like[k]) for k in like if k != "state"}, "state": state}


def save_run(out, run, cfg):
  meta = {k: v for k, v in run.items() if k != "state"}
  saved_cfg = {k: v for k, v in cfg.items() if k != "resume"}
  checkpoint.save(out, run["global_step"], run["state"], {**meta, "config": saved_cfg})


def compile_steps(lm, tx, run, cfg, segment_lengths):
  """The jitted calls, compiled ahead of time so that epoch times hold no compilation:
  {time steps: train call} (one per segment length) and the eval step."""
  bptt = cfg["bptt"]

  def train_call(params, opt_state, carry, inputs, targets, key):  # inputs [B, T]
    return drnn.tbptt_train(lm.train_loss, tx, params, opt_state, carry, inputs, targets,
                            bptt, key=key)

  def eval_step(params, carry, inputs, targets, lengths):  # inputs [B, bptt]
    return lm.nll(params, carry, inputs, targets, lengths)

  # shapes only: a restored checkpoint's arrays then compile to what fresh ones do (the
  # same program, so a relaunch finds it in a persistent compilation cache)
  s = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), run["state"])
  B, E = cfg["batch_size"], cfg["eval_batch_size"]
  ids = lambda b, t: jax.ShapeDtypeStruct((b, t), np.int32)
  key = jax.eval_shape(jax.random.key, 0)
  train = jax.jit(train_call, donate_argnums=(0, 1))  # not the carry: h, c may share a buffer
  calls = {t: train.lower(s["params"], s["opt_state"], s["carry"], ids(B, t), ids(B, t),
                          key).compile() for t in segment_lengths}
  evaluate = jax.jit(eval_step).lower(
      s["params"], jax.eval_shape(lambda: lm.initial_state(E)), ids(E, bptt), ids(E, bptt),
      jax.ShapeDtypeStruct((E,), np.int32)).compile()
  return calls, evaluate


def train_segment(run, cfg, data, call, start, stop):
  """One jitted call: the chunks of time steps [start, stop) of the epoch; updates `run`."""
  s, B = run["state"], cfg["batch_size"]
  key = jax.random.fold_in(jax.random.wrap_key_data(np.asarray(run["rng"], np.uint32)),
                           run["global_step"])
  t0 = time.perf_counter()
  s["params"], s["opt_state"], s["carry"], losses = call(
      s["params"], s["opt_state"], s["carry"], data[:, start:stop], data[:, start + 1:stop + 1],
      key)
  losses = np.asarray(jax.device_get(losses), np.float64)  # [chunks], each a mean
  seconds = time.perf_counter() - t0
  step = run["global_step"] + len(losses)
  if not np.isfinite(losses).all():
    raise NonFinite(f"non-finite training loss in steps {run['global_step'] + 1}-{step} "
                    f"(epoch {run['epoch'] + 1})")
  lengths = np.minimum(cfg["bptt"], (stop - start) - cfg["bptt"] * np.arange(len(losses)))
  sums = run["sums"]
  for k, v in (("nll", float(losses @ lengths) * B), ("tokens", int(lengths.sum()) * B),
               ("seconds", seconds), ("steps", len(losses))):
    sums[k] = sums.get(k, 0) + v
  run["segment"], run["global_step"] = run["segment"] + 1, step
  run["tokens_seen"] += int(lengths.sum()) * B


def train_epoch(run, cfg, data, calls, stop, validate=None):
  """Runs the rest of epoch `run["epoch"]` from segment `run["segment"]`; `validate(run)`
  after each call that passes a multiple of --val-every steps."""
  segs = input_pipeline.segments(data.shape[1] - 1, cfg["bptt"], cfg["chunks_per_call"])
  if run["segment"] == 0:  # each epoch starts from zeros, as the text does
    run["state"]["carry"] = jax.tree.map(jnp.zeros_like, run["state"]["carry"])
  total = sum(input_pipeline.num_chunks(b - a, cfg["bptt"]) for a, b in segs)
  done = sum(input_pipeline.num_chunks(b - a, cfg["bptt"]) for a, b in segs[:run["segment"]])
  bar = tqdm(total=total, initial=done, desc=f"epoch {run['epoch'] + 1}", unit="step",
             leave=False, disable=None, dynamic_ncols=True)
  for start, end in segs[run["segment"]:]:
    before = run["global_step"]
    train_segment(run, cfg, data, calls[end - start], start, end)
    bar.update(run["global_step"] - before)
    every = cfg["val_every"]
    if validate and every and run["global_step"] // every > before // every:
      validate(run)
    bar.set_postfix(ppl=f"{report.perplexity(run['sums']['nll'], run['sums']['tokens']):.1f}")
    if stop["signal"] and run["segment"] < len(segs):
      bar.close()
      raise Interrupted(f"{stop['signal']} at step {run['global_step']} (epoch "
                        f"{run['epoch'] + 1}, {run['segment']} of {len(segs)} calls)")
  bar.close()


def evaluate(eval_step, lm, params, ids, cfg, what):
  """Loss (mean NLL per token) and perplexity of the stream `ids` [n], read as
  --eval-batch-size streams in chunks of --bptt steps, the state carried across chunks."""
  data = input_pipeline.batchify(ids, cfg["eval_batch_size"], what)  # [E, N]
  carry, nll, count = lm.initial_state(data.shape[0]), 0.0, 0
  for start in tqdm(range(0, data.shape[1] - 1, cfg["bptt"]), desc=what, leave=False,
                    disable=None, dynamic_ncols=True):
    c = input_pipeline.chunk(data, start, cfg["bptt"])
    lengths = np.full((data.shape[0],), c["length"], np.int32)
    (total, n), carry = eval_step(params, carry, c["inputs"], c["targets"], lengths)
    nll, count = nll + float(total), count + int(n)
  return {"loss": nll / count, "perplexity": report.perplexity(nll, count), "tokens": count}


def curve_point(run, val):
  """A point of the learning curve: validation loss after `tokens_seen` training tokens."""
  return {"tokens": run["tokens_seen"], "step": run["global_step"], "epoch": run["epoch"] + 1,
          "val_loss": val["loss"]}


def epoch_record(run, val, val_seconds):
  s = run["sums"]
  return {"epoch": run["epoch"] + 1, "loss": s["nll"] / s["tokens"],
          "perplexity": report.perplexity(s["nll"], s["tokens"]), "val_loss": val["loss"],
          "val_perplexity": val["perplexity"], "tokens": s["tokens"], "steps": s["steps"],
          "train_seconds": s["seconds"], "val_seconds": val_seconds,
          "tokens_per_s": s["tokens"] / s["seconds"]}


def fit(run, cfg, lm, data, steps, write):
  """Trains until --epochs, validating and checkpointing after every epoch; on SIGINT or
  SIGTERM saves a checkpoint (mid-epoch if need be) and raises Interrupted."""
  calls, eval_step = steps
  stop = {"signal": None}
  previous = cli.on_signals(stop)
  validate = lambda run: run["curve"].append(curve_point(run, evaluate(
      eval_step, lm, run["state"]["params"], data.val, cfg, "validation")))
  try:
    while run["epoch"] < cfg["epochs"]:
      try:
        train_epoch(run, cfg, data.train, calls, stop, validate)
      except Interrupted:
        save_run(cfg["out"], run, cfg)
        write(run)
        raise
      t_val = time.perf_counter()
      val = evaluate(eval_step, lm, run["state"]["params"], data.val, cfg, "validation")
      run["history"].append(epoch_record(run, val, time.perf_counter() - t_val))
      if not run["curve"] or run["curve"][-1]["step"] != run["global_step"]:
        run["curve"].append(curve_point(run, val))
      print(report.epoch_line(run["history"][-1]), flush=True)
      run.update(epoch=run["epoch"] + 1, segment=0, sums={})
      save_run(cfg["out"], run, cfg)
      write(run)
      if stop["signal"]:  # it came during validation: the epoch's checkpoint is saved
        raise Interrupted(f"{stop['signal']} at the end of epoch {run['epoch']}")
  finally:
    cli.restore_signals(previous)


def device_name():
  d = jax.devices()[0]
  return f"{d.platform} ({d.device_kind}), {os.cpu_count()} CPU cores visible"


def metrics(cfg, run, n_params, origin, test=None, sample=None):
  return {"impl": "jax", "config": cfg, "history": run["history"], "curve": run["curve"],
          "test": test,
          "sample": sample, "params": n_params, "device": device_name(),
          "steps": run["global_step"], "provenance": origin}


def train_and_evaluate(cfg, explicit, argv):
  """The whole run of configuration `cfg` (`explicit`: the settings given on the command
  line, `argv`: the command line, for the provenance)."""
  # the same --out continues a run or starts it: a preempted job is relaunched as is
  resuming = checkpoint.latest(cfg["out"]) is not None
  if resuming or cfg["resume"]:  # --resume: a checkpoint is required (an error if none)
    cfg = resume_config(cfg["out"], explicit)
  origin = provenance.collect(argv)
  print(f"{'continuing the run in' if resuming else 'writing metrics, curves and checkpoints to'} "
        f"{cfg['out']}", flush=True)
  with compile_cache.enabled(cfg["compile_cache"]) as cache:
    train(cfg, resuming, origin, cache)
  print(f"metrics: {os.path.join(cfg['out'], 'metrics.json')}, curves: "
        f"{os.path.join(cfg['out'], 'curves.png')}, checkpoints: {checkpoint.path(cfg['out'])}")


def train(cfg, resuming, origin, cache):
  """Loads the text, builds or restores the run, compiles, trains, tests and samples."""
  counted = dict(compile_cache.counts)
  data = input_pipeline.load_for(cfg)
  lm = model.language_model(cfg["vocab"], cfg["embed"], cfg["hidden"], dropout=cfg["dropout"],
                            tie=cfg["tie"], init_range=cfg["init_range"], cell=cfg["cell"],
                            residual=cfg["residual"], time_loop=cfg.get("time_loop", "scan"))
  segs = input_pipeline.segments(data.train.shape[1] - 1, cfg["bptt"], cfg["chunks_per_call"])
  tx = make_optimizer(cfg, sum(input_pipeline.num_chunks(b - a, cfg["bptt"]) for a, b in segs))
  run = restore_run(cfg["out"], lm, tx, cfg) if resuming else fresh_run(lm, tx, cfg)
  t0 = time.perf_counter()
  steps = compile_steps(lm, tx, run, cfg, sorted({b - a for a, b in segs}))
  n_params = drnn.count_params(run["state"]["params"])
  print(f"{cfg['cell'].upper()} {','.join(map(str, cfg['hidden']))}"
        f"{' residual' if cfg['residual'] else ''}, {cfg['level']} level, embed {cfg['embed']}"
        f"{' (tied)' if cfg['tie'] else ''}, {n_params} parameters; "
        f"{device_name()}; compiled in {time.perf_counter() - t0:.1f}s "
        f"({compile_cache.summary(cache, counted)}); "
        f"{'continuing' if resuming else 'starting'} at epoch {run['epoch'] + 1}, "
        f"global step {run['global_step']}", flush=True)
  print(cli.time_loops(lm.rnn), flush=True)
  write = lambda run: report.write_metrics(cfg["out"], metrics(cfg, run, n_params, origin))
  fit(run, cfg, lm, data, steps, write)
  params = run["state"]["params"]
  test = evaluate(steps[1], lm, params, data.test, cfg, "test")
  print(f"test ({test['tokens']} tokens) - loss: {test['loss']:.4f} - perplexity: "
        f"{test['perplexity']:.2f}")
  sample = None
  if cfg["sample"] is not None:
    sample = sampling.sample_text(lm, params, cfg["sample"], data.vocab, data.words,
                                  cfg["sample_words"], cfg["temperature"], cfg["seed"],
                                  cfg["level"])
    print(f"sample (temperature {cfg['temperature']}): {sample}")
  report.write_metrics(cfg["out"], metrics(cfg, run, n_params, origin, test, sample))
