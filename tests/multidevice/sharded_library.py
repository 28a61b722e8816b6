"""Run in a process of its own by tests/test_sharding.py: the library on 4 virtual CPU
devices against the same functions on one device. Prints one JSON object: case ->
{"diff": max |sharded - single| over every leaf, relative to the leaf's largest value,
"specs": the partition specs of the sharded results' leaves}, or {"error": message}.
"""

import json
import re
import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)  # before any backend starts

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # noqa: E402

import deeprnn_jax as drnn  # noqa: E402
from deeprnn_jax import diagnostics  # noqa: E402

B, T, F = 8, 9, 6
XS = jax.random.normal(jax.random.key(1), (B, T, F))
LENGTHS = jnp.array([9, 3, 0, 9, 5, 1, 7, 2])
RESETS = jax.random.uniform(jax.random.key(3), (B, T)) < 0.2
LABELS = jnp.arange(B, dtype=jnp.int32) % 2


def grad_of(model, output="sequence", train=False):
  def loss(params, xs, lengths, resets):
    ys, state = model.apply(params, xs, lengths, train=train, output=output,
                            key=jax.random.key(5) if train else None, resets=resets)
    return jnp.sum(ys ** 2) + sum(jnp.sum(a ** 2) for a in jax.tree.leaves(state)), state
  return jax.jit(jax.value_and_grad(loss, has_aux=True))


def lstm_dropout(put):
  model = drnn.stacked_rnn("lstm", F, (5, 4), dropout=0.3)
  # lengths left replicated: the library reshards them to follow the batch
  return grad_of(model, train=True)(model.init(jax.random.key(0)), put(XS), LENGTHS, None)


def recurrent_dropout(put):
  """Recurrent dropout's per-sequence masks (GRU: masked weight copies [B, H, 3H]; LSTM:
  a mask [B, H]) split with the rows each device runs."""
  out = []
  for kind in ("gru", "lstm"):
    model = drnn.stacked_rnn(kind, F, (5, 4), recurrent_dropout=0.4, remat=kind == "lstm")
    out.append(grad_of(model, train=True)(model.init(jax.random.key(0)), put(XS),
                                          put(LENGTHS), None))
  return out


def dropout(put):
  """`drnn.dropout` on rows split over the mesh draws the same mask as on one device
  (an even and an odd feature width)."""
  return [jax.jit(drnn.dropout, static_argnums=2)(put(XS[..., :f]), jax.random.key(9), 0.4)
          for f in (F, F - 1)]


def dropout_draw_sizes():
  """The random words each device draws for `drnn.dropout` on [8, 9, 6] split 4 ways:
  whether the compiled program holds [2, 9, 3] (its own rows) and [8, 9, 3] (all)."""
  mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    xs = jax.device_put(XS, NamedSharding(mesh, P("data")))
    hlo = jax.jit(drnn.dropout, static_argnums=2).lower(xs, jax.random.key(9), 0.4)
    text = hlo.compile().as_text()
  return {"own_rows": "u32[2,9,3]" in text, "all_rows": "u32[8,9,3]" in text}


def bf16_against_float32():
  """bf16 compute (the cell rewritten, no fast rule), both directions, remat chunks, on 4
  devices and on one, each against the float32 gradient: the devices' partial weight
  gradients are rounded to bf16 before their sum, so the two bf16 results differ by bf16
  rounding; what matters is that the sharded one is no further from float32."""
  def model(dtype):
    return drnn.stacked_rnn("gru", F, (6, 6), bidirectional=True, remat=True,
                            compute_dtype=dtype)
  params = model(None).init(jax.random.key(0))
  exact = grad_of(model(None))(params, XS, LENGTHS, None)
  one = grad_of(model(jnp.bfloat16))(params, XS, LENGTHS, None)
  mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
    four = grad_of(model(jnp.bfloat16))(params, put(XS), put(LENGTHS), None)
  return {"one_vs_f32": compare(one, exact)["diff"],
          "sharded_vs_f32": compare(four, exact)["diff"]}


def loop_collectives(put):
  """All-reduces in the compiled gradient of a GRU and an LSTM stack, counted inside
  while-loop bodies and outside them (only on the mesh; one device has none)."""
  counts = {}
  for kind in ("gru", "lstm"):
    model = drnn.stacked_rnn(kind, F, (8, 8))
    params = model.init(jax.random.key(0))
    hlo = grad_of(model).lower(params, put(XS), put(LENGTHS), None).compile().as_text()
    counts[kind] = all_reduces_in_loops(hlo)
  return counts


def all_reduces_in_loops(hlo: str):
  """(all-reduces inside while bodies, all-reduces elsewhere) in optimized HLO text."""
  bodies = set(re.findall(r"body=%?([\w.\-]+)", hlo))
  inside = outside = 0
  name = None
  for line in hlo.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) \(", line)
    if head:
      name = head.group(1)
    if re.search(r"\ball-reduce(?:-start)?\(", line):
      inside, outside = (inside + 1, outside) if name in bodies else (inside, outside + 1)
  return inside, outside


def gru_wavefront_resets(put):
  model = drnn.stacked_rnn("gru", F, (5, 5, 5), schedule="wavefront", residual=True)
  return grad_of(model)(model.init(jax.random.key(0)), put(XS), put(LENGTHS), put(RESETS))


def lstm_bidirectional_last(put):
  model = drnn.stacked_rnn("lstm", F, (4,), bidirectional=True, proj_size=3)
  return grad_of(model, output="last")(model.init(jax.random.key(0)), put(XS),
                                       put(LENGTHS), None)


def gru_fsdp(put, shard_params):
  model = drnn.stacked_rnn("gru", F, (8, 8))
  params = shard_params(model.init(jax.random.key(0)))
  return grad_of(model)(params, put(XS), put(LENGTHS), None)


def lstm_step(put):
  model = drnn.stacked_rnn("lstm", F, (5, 4))
  state = jax.tree.map(lambda a: a + 0.5, model.initial_state(B))  # left replicated
  return jax.jit(model.step)(model.init(jax.random.key(0)), state, put(XS[:, 0]),
                             put(RESETS[:, 0]))


def tbptt(put):
  model = drnn.stacked_rnn("lstm", F, (5, 4))
  params, tx = model.init(jax.random.key(0)), optax.adam(1e-2)

  def loss(p, s, xc, yc, lc, k):
    ys, s = model.apply(p, xc, lc, s)
    return jnp.mean((ys[..., 0] - yc) ** 2), s

  def both(p, x, lengths):
    ys, _ = drnn.tbptt_apply(model, p, x, 4, lengths)
    p, _, state, losses = drnn.tbptt_train(loss, tx, p, tx.init(p), model.initial_state(B),
                                           x, x[..., 0], 4, lengths)
    return ys, p, state, losses
  return jax.jit(both)(params, put(XS), put(LENGTHS))


def gradient_norms(put):
  model = drnn.stacked_rnn("gru", F, (5, 5, 4))
  return diagnostics.state_gradient_norms(model, model.init(jax.random.key(0)), put(XS),
                                          lambda ys: jnp.sum(ys[:, -1] ** 2),
                                          lengths=put(LENGTHS), max_norm=1.0)


def lstm_forward(put):
  model = drnn.stacked_rnn("lstm", F, (5, 5, 4))
  return jax.jit(model.apply)(model.init(jax.random.key(0)), put(XS), put(LENGTHS))


def train_step(put):
  model = drnn.stacked_rnn("lstm", F, (5, 5), dropout=0.2)

  def loss_fn(p, batch, *, key, train):
    ys, _ = model.apply(p, batch["x"], batch["lengths"], train=train, key=key, output="last")
    return drnn.sigmoid_binary_loss(ys[:, 0], batch["labels"])
  tx = drnn.optimizer(1e-2, max_norm=1.0)
  params = model.init(jax.random.key(0))
  batch = {"x": put(XS), "lengths": put(LENGTHS), "labels": put(LABELS)}
  step = jax.jit(drnn.make_train_step(loss_fn, tx))
  return step(params, tx.init(params), batch, jax.random.key(7))


def pipeline_lstm():
  """Forward and gradients of an 8-layer stack pipelined over 4 stages, chunks of 5 of 21
  steps (the last chunk padded), against the layer schedule on one device."""
  xs = jax.random.normal(jax.random.key(1), (4, 21, 8))
  lengths = jnp.array([21, 5, 0, 17])

  def loss(model):
    def f(params):
      ys, state = model.apply(params, xs, lengths)
      return jnp.sum(ys ** 2) + sum(jnp.sum(a ** 2) for a in jax.tree.leaves(state)), state
    return jax.jit(jax.value_and_grad(f, has_aux=True))

  ref = drnn.stacked_rnn("lstm", 8, (8,) * 8)
  params = ref.init(jax.random.key(0))
  want = loss(ref)(params)
  mesh = jax.make_mesh((4,), ("stage",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    got = loss(drnn.stacked_rnn("lstm", 8, (8,) * 8, schedule=drnn.pipeline("stage", 5)))(params)
  return compare(got, want)


def pipeline_gru_all():
  """Every layer's outputs of a residual GRU stack on 2 stages (Auto axis), and whether
  the compiled program passes chunks between stages with a collective-permute."""
  xs = jax.random.normal(jax.random.key(1), (4, 12, 6))
  ref = drnn.stacked_rnn("gru", 6, (6,) * 4, residual=True)
  params = ref.init(jax.random.key(0))
  want = ref.apply(params, xs, output="all")
  mesh = jax.make_mesh((2,), ("stage",), axis_types=(AxisType.Auto,), devices=jax.devices()[:2])
  model = drnn.stacked_rnn("gru", 6, (6,) * 4, residual=True,
                           schedule=drnn.pipeline("stage", 4, mesh=mesh))
  compiled = jax.jit(lambda p, x: model.apply(p, x, output="all")).lower(params, xs).compile()
  result = compare(compiled(params, xs), want)
  result["collective_permute"] = "collective-permute" in compiled.as_text()
  return result


def pipeline_errors():
  """Messages of the pipeline's refusals, keyed by what was refused."""
  mesh = jax.make_mesh((4,), ("stage",), axis_types=(AxisType.Auto,))
  xs = jnp.ones((2, 6, 4))
  errors = {}
  for name, kw, call in (
      ("layers", dict(hidden_sizes=(4,) * 3), {}),
      ("resets", dict(hidden_sizes=(4,) * 4), dict(resets=jnp.zeros((2, 6), bool))),
      ("dropout", dict(hidden_sizes=(4,) * 4, dropout=0.5),
       dict(train=True, key=jax.random.key(0))),
      ("axis", dict(hidden_sizes=(4,) * 4), "other")):
    axis = "other" if call == "other" else "stage"
    model = drnn.stacked_rnn("lstm", 4, schedule=drnn.pipeline(axis, 2, mesh=mesh), **kw)
    try:
      model.apply(model.init(jax.random.key(0)), xs, **({} if call == "other" else call))
      errors[name] = None
    except ValueError as e:
      errors[name] = str(e)
  return errors


def onednn_lengths(put):
  """The fused CPU loop per device (shard_map): ragged rows, both directions, dropout."""
  out = []
  for kind in ("lstm", "gru"):
    model = drnn.stacked_rnn(kind, F, (16, 16), time_loop="onednn", bidirectional=True,
                             dropout=0.2)
    out.append(grad_of(model, train=True)(model.init(jax.random.key(0)), put(XS),
                                          put(LENGTHS), None))
  return out


def auto_split_batch(put):
  """time_loop="auto" with the batch split over this process's devices: the scan (the
  devices' oneDNN calls would take turns), the same numbers."""
  model = drnn.stacked_rnn("gru", F, (16, 16), time_loop="auto")
  return grad_of(model)(model.init(jax.random.key(0)), put(XS), put(LENGTHS), None)


CASES = {"onednn_lengths": onednn_lengths, "auto_split_batch": auto_split_batch, "lstm_dropout": lstm_dropout, "gru_wavefront_resets": gru_wavefront_resets,
         "lstm_bidirectional_last": lstm_bidirectional_last,
         "lstm_step": lstm_step, "tbptt": tbptt, "gradient_norms": gradient_norms,
         "train_step": train_step, "recurrent_dropout": recurrent_dropout,
         "dropout": dropout}


def fsdp_sharding(mesh):
  """Each leaf split over "data" on its last axis that 4 divides (FSDP-style)."""
  def put(a):
    spec = [None] * a.ndim
    axis = next((i for i in reversed(range(a.ndim)) if a.shape[i] % 4 == 0), None)
    if axis is not None:
      spec[axis] = "data"
    return jax.device_put(a, NamedSharding(mesh, P(*spec)))
  return lambda tree: jax.tree.map(put, tree)


def compare(got, want):
  diff = 0.0
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = max(diff, float(np.max(np.abs(a - b), initial=0) / max(1.0, np.max(np.abs(b), initial=0))))
  specs = [str(jax.typeof(a).sharding.spec) for a in jax.tree.leaves(got)]
  return {"diff": diff, "specs": specs}


def run(name, fn, axis_type, **kw):
  want = fn(lambda a: a, **{k: (lambda t: t) for k in kw})
  mesh = jax.make_mesh((4,), ("data",), axis_types=(axis_type,))
  with jax.set_mesh(mesh):
    put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))
    try:
      got = fn(put, **{k: v(mesh) for k, v in kw.items()})
    except Exception as e:  # noqa: BLE001 -- reported as the case's result
      return {"error": f"{type(e).__name__}: {str(e)[:500]}"}
  return compare(got, want)


def loop_collectives_on_mesh():
  mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Explicit,))
  with jax.set_mesh(mesh):
    return loop_collectives(lambda a: jax.device_put(a, NamedSharding(mesh, P("data"))))


def main():
  results = {name: run(name, fn, AxisType.Explicit) for name, fn in CASES.items()}
  results["gru_fsdp"] = run("gru_fsdp", gru_fsdp, AxisType.Explicit, shard_params=fsdp_sharding)
  results["loop_collectives"] = {
      "mesh": loop_collectives_on_mesh(), "one_device": loop_collectives(lambda a: a)}
  results["bf16"] = bf16_against_float32()
  results["dropout_draw_sizes"] = dropout_draw_sizes()
  results["lstm_forward_auto"] = run("lstm_forward_auto", lstm_forward, AxisType.Auto)
  for name, fn in (("pipeline_lstm", pipeline_lstm), ("pipeline_gru_all", pipeline_gru_all),
                   ("pipeline_errors", pipeline_errors)):
    try:
      results[name] = fn()
    except Exception as e:  # noqa: BLE001 -- reported as the case's result
      results[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
  results["devices"] = jax.device_count()
  json.dump(results, sys.stdout)


if __name__ == "__main__":
  main()
