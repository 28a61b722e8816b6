"""Where does the seed model's jitted training step lose time to Keras 3's own? Taken apart.

    python benchmarks/tools/keras_seed_step.py --cell gru --rounds 30

Where `keras_seed.py` times whole commands, this times one compiled step of each side in
one process, on random tokens (B = 32, T = 100, vocabulary 10,000): ours is
`drnn.make_train_step` on the trainer's seed classifier with its seed optimizer (Adam
1e-3, no clipping), parameters and optimizer state donated as the trainer does; Keras'
is its `Model.train_step` on the seed's Sequential model, jitted with its state donated
as `fit` runs it. Variants locate the difference:
- `*_nornn`: the two recurrent layers replaced by mean pooling (what is left is the
  embedding's gather and scatter, the dense layer, the optimizer and the metrics);
- `ours_last`: the top layer's last carry instead of the model's masked outputs and the
  gather at each review's last token (what Keras' left-padded model reads);
- `ours_last_nonorm`: that, without the `grad_norm` metric.
Each round runs every variant for --steps steps in a shuffled order; the table gives the
median milliseconds per step and, per round, Keras / variant (> 1: the variant is
faster). Run it on a quiet machine.
"""

import argparse
import os
import pathlib
import random
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import deeprnn_jax as drnn  # noqa: E402
from examples.common import provenance  # noqa: E402
from examples.imdb import model as seed_model  # noqa: E402

B, T, VOCAB, EMBED, UNITS = 32, 100, 10000, 32, 5


def batch_of(seed=0):
  """Random reviews filling all T steps (right padding then changes nothing)."""
  rng = np.random.default_rng(seed)
  return {"tokens": rng.integers(2, VOCAB, (B, T)).astype(np.int32),
          "lengths": np.full((B,), T, np.int32),
          "labels": rng.integers(0, 2, (B,)).astype(np.int32),
          "weights": np.ones((B,), np.float32)}


def _dense_logit(params, h):
  return (h @ params["dense"]["w"] + params["dense"]["b"])[:, 0]  # [B]


def our_loss(cell, variant):
  """(init, loss) of our seed model or one of its variants."""
  net = seed_model.classifier(VOCAB, EMBED, cell, (UNITS, UNITS))
  if variant == "model":
    return net.init, net.loss

  def init(key):
    params = net.init(key)
    if variant == "nornn":
      params = {**params, "rnn": {}, "dense": {"w": jnp.zeros((EMBED, 1)),
                                               "b": jnp.zeros((1,))}}
    return params

  def loss(params, batch, *, key=None, train=False):
    xs = params["embed"].at[batch["tokens"]].get()  # [B, T, E]
    if variant == "nornn":
      h = xs.mean(axis=1)  # [B, E]
    else:  # "last": the top layer's carry after the last step
      _, state = net.rnn.apply(params["rnn"], xs)
      h = seed_model._last_hidden(state)  # [B, H]
    return drnn.sigmoid_binary_loss(_dense_logit(params, h), batch["labels"],
                                    batch["weights"])

  return init, loss


def without_grad_norm(loss, tx):
  """`make_train_step`'s step without its `grad_norm` metric."""

  def step(params, opt_state, batch, key):
    (value, metrics), grads = jax.value_and_grad(
        lambda p: loss(p, batch, key=key, train=True), has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {**metrics, "loss": value}

  return step


def ours(cell, batch, variant="model", grad_norm=True):
  """A function running n of our steps and waiting for them."""
  init, loss = our_loss(cell, variant)
  tx = drnn.optimizer(1e-3, max_norm=None)
  step = drnn.make_train_step(loss, tx) if grad_norm else without_grad_norm(loss, tx)
  jitted = jax.jit(step, donate_argnums=(0, 1))
  params = init(jax.random.key(0))
  state = [params, tx.init(params)]
  batch = jax.device_put(batch)

  def run(n):
    for _ in range(n):
      state[0], state[1], _ = jitted(state[0], state[1], batch, None)
    jax.block_until_ready(state[0])

  return run


def keras_step(cell, batch, rnn=True):
  """A function running n of Keras' own jitted train steps on the seed model."""
  import keras
  layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
  middle = ([layer(UNITS, return_sequences=True), layer(UNITS)] if rnn
            else [keras.layers.GlobalAveragePooling1D()])
  model = keras.Sequential([keras.Input((T,), dtype="int32"),
                            keras.layers.Embedding(VOCAB, EMBED), *middle,
                            keras.layers.Dense(1, activation="sigmoid")])
  model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
  model.fit(batch["tokens"], batch["labels"], epochs=1, batch_size=B, verbose=0)  # builds
  jitted = jax.jit(model.train_step, donate_argnums=0)
  state = [model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                optimizer_variables=True, metrics_variables=True)]
  data = (jnp.asarray(batch["tokens"]), jnp.asarray(batch["labels"]))

  def run(n):
    for _ in range(n):
      _, state[0] = jitted(state[0], data)
    jax.block_until_ready(state[0])

  return run


def measure(impls, rounds, steps):
  """Per variant, the milliseconds per step of each round (shuffled order per round)."""
  for run in impls.values():
    run(steps)  # compiled and warm
  times = {name: [] for name in impls}
  for _ in range(rounds):
    order = list(impls)
    random.shuffle(order)
    for name in order:
      t0 = time.perf_counter()
      impls[name](steps)
      times[name].append((time.perf_counter() - t0) / steps * 1e3)
  return {name: np.asarray(ms) for name, ms in times.items()}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--cell", choices=("lstm", "gru"), default="gru")
  ap.add_argument("--rounds", type=int, default=30)
  ap.add_argument("--steps", type=int, default=25)
  args = ap.parse_args(argv)
  batch = batch_of()
  impls = {"keras": keras_step(args.cell, batch),
           "keras_nornn": keras_step(args.cell, batch, rnn=False),
           "ours": ours(args.cell, batch),
           "ours_nornn": ours(args.cell, batch, "nornn"),
           "ours_last": ours(args.cell, batch, "last"),
           "ours_last_nonorm": ours(args.cell, batch, "last", grad_norm=False)}
  ms = measure(impls, args.rounds, args.steps)
  print(f"{args.cell.upper()} seed step, {provenance.cpu_model()}, {jax.devices()[0]}, "
        f"{args.rounds} rounds of {args.steps} steps")
  print("| variant | ms / step (median) | Keras / variant per round: median (quartiles) |")
  print("| --- | ---: | --- |")
  for name, t in ms.items():
    keras = ms["keras_nornn" if name.endswith("nornn") else "keras"]
    q1, q2, q3 = np.percentile(keras / t, [25, 50, 75])
    print(f"| {name} | {np.median(t):.3f} | {q2:.2f}x ({q1:.2f}-{q3:.2f}) |")


if __name__ == "__main__":
  main()
