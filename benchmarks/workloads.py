"""The benchmarked workload, built four ways: deeprnn_jax, Flax linen, PyTorch and Keras 3.

One training step of a sequence classifier: xs [batch, time, features] -> a stack of
`depth` recurrent layers of width `hidden` -> the last time step's output -> dense(1) ->
binary cross-entropy on the logits; then global-norm clipping (max norm 1) and Adam
(learning rate 1e-3). Every impl gets the same batch and the same optimizer maths.

Each builder returns a `Workload`: `compile()` traces, lowers and compiles the step (JAX;
a no-op for eager PyTorch) and returns the seconds each stage took; `step()` runs one
training step, blocks until it is done and returns the loss. The same code runs on a GPU:
JAX uses its default device, PyTorch takes CUDA (cuDNN RNNs) when it is available.
"""

import contextlib
import json
import os
import time
from typing import Callable, NamedTuple, Optional

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras (tfds may)

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

import deeprnn_jax as drnn

LEARNING_RATE = 1e-3
MAX_NORM = 1.0  # global-norm clipping bound, as in the library's default optimizer
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
FLAX_CELLS = {"rnn": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}
IMPLS = ("deeprnn_jax", "flax", "torch", "keras")
KERAS_LAYERS = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


class Spec(NamedTuple):
  """One point of the grid: the cell, width and depth of the stack and the batch shape."""

  cell: str
  hidden: int
  depth: int
  batch: int = 64
  time: int = 100
  features: int = 32


class Workload(NamedTuple):
  """One impl's training step on one `Spec`, ready to compile and run.

  Attributes:
    impl: "deeprnn_jax" (or "deeprnn_jax[option=value,...]"), "flax" or "torch".
    param_count: number of trainable scalars, in the impl's own layout.
    device: where the step runs, in words.
    compile: `compile() -> {"trace_s", "lower_s", "xla_compile_s", "compile_s"}` (seconds;
      compile_s is their sum, what a user waits for before the first step); {} for eager
      PyTorch.
    step: `step() -> loss`, one training step that blocks until every output is ready.
    memory: `memory() -> dict` of what the backend reports (bytes); {} where nothing.
  """

  impl: str
  param_count: int
  device: str
  compile: Callable[[], dict]
  step: Callable[[], object]
  memory: Callable[[], dict]


def make_batch(spec: Spec, seed: int = 0):
  """The benchmark batch as NumPy: xs [B, T, F] standard normal, labels [B] in {0, 1}."""
  rng = np.random.default_rng(seed)
  xs = rng.standard_normal((spec.batch, spec.time, spec.features)).astype(np.float32)
  labels = (rng.random(spec.batch) < 0.5).astype(np.float32)
  return xs, labels


def train_flops(spec: Spec) -> int:
  """Model FLOPs of one training step: the forward matmuls x 3 (forward + backward).

  Per layer and time step the forward pass multiplies [B, in] @ [in, G*H] (the input
  projection) and [B, H] @ [H, G*H] (the recurrence), 2 FLOPs per multiply-add; the head
  adds [B, H] @ [H, 1]. Gate arithmetic and the optimizer are not counted (nanoGPT's MFU
  convention: model FLOPs, not hardware FLOPs).
  """
  B, T, H, G = spec.batch, spec.time, spec.hidden, GATES[spec.cell]
  widths = [spec.features] + [H] * (spec.depth - 1)
  forward = sum(2 * B * T * (w + H) * G * H for w in widths) + 2 * B * H
  return 3 * forward


def parse_opts(text: Optional[str]):
  """deeprnn_jax option sets from JSON: an object, or a list of objects; None -> [{}]."""
  if text is None or not text.strip():
    return [{}]
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"bench opts: expected JSON (an object of stacked_rnn keyword "
                     f"arguments, or a list of them), got {text!r}: {e}") from None
  sets = value if isinstance(value, list) else [value]
  if not sets or not all(isinstance(s, dict) for s in sets):
    raise ValueError(f"bench opts: expected a JSON object or a non-empty list of objects, "
                     f"got {text!r}")
  return sets


def impl_label(opts: dict) -> str:
  """"deeprnn_jax" for the defaults, "deeprnn_jax[k=v,...]" for an option set."""
  if not opts:
    return "deeprnn_jax"
  items = ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                   for k, v in sorted(opts.items()))
  return f"deeprnn_jax[{items}]"


# -- devices ---------------------------------------------------------------------------------

def cpu_name() -> str:
  """The CPU's model name from /proc/cpuinfo, or "cpu" where there is none."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "cpu"


def jax_device_name() -> str:
  d = jax.devices()[0]
  if d.platform == "cpu":
    return f"cpu: {cpu_name()} ({os.cpu_count()} cores)"
  return f"{d.platform}: {d.device_kind}"


# -- JAX impls ---------------------------------------------------------------------------------

def _dense_head(key, hidden):
  """Dense(1) params with Flax's defaults: LeCun-normal kernel [H, 1], zero bias [1]."""
  return {"w": jax.nn.initializers.lecun_normal()(key, (hidden, 1), jnp.float32),
          "b": jnp.zeros((1,), jnp.float32)}


def _jax_workload(impl, train_step, params, tx, spec, seed=0, mesh=None):
  """Compiles and runs `train_step(params, opt_state, batch, key)` with donated state;
  with `mesh` (1-D, axis "data"), the batch split over it and the state replicated."""
  params = jax.tree.map(jnp.array, params)  # private copies: their buffers get donated
  batch = tuple(jnp.asarray(a) for a in make_batch(spec, seed))
  if mesh is not None:
    params = jax.device_put(params, NamedSharding(mesh, P()))
    batch = jax.device_put(batch, NamedSharding(mesh, P("data")))
  state = {"params": params, "opt_state": tx.init(params), "compiled": None}
  key = jax.random.key(0)
  on_mesh = (lambda: jax.set_mesh(mesh)) if mesh is not None else contextlib.nullcontext

  def compile_():
    with on_mesh():
      return _compile(train_step, state, batch, key)

  def step():
    with on_mesh():
      if state["compiled"] is None:
        _compile(train_step, state, batch, key)
      return _run(state, batch, key)

  def memory():
    out = {}
    analysis = state["compiled"].memory_analysis() if state["compiled"] is not None else None
    if analysis is not None:  # XLA's buffer assignment: exact for this executable
      out["xla_temp_bytes"] = int(analysis.temp_size_in_bytes)
      out["xla_argument_bytes"] = int(analysis.argument_size_in_bytes)
      out["xla_output_bytes"] = int(analysis.output_size_in_bytes)
    stats = jax.devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:  # GPU/TPU only; a process-wide peak
      out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return out

  device = jax_device_name() + (f", batch split over {mesh.size} devices" if mesh else "")
  return Workload(impl=impl, param_count=drnn.count_params(params), device=device,
                  compile=compile_, step=step, memory=memory)


def _compile(train_step, state, batch, key):
  """Traces, lowers and compiles the step into state["compiled"]; returns the times."""
  jitted = jax.jit(train_step, donate_argnums=(0, 1))
  t0 = time.perf_counter()
  traced = jitted.trace(state["params"], state["opt_state"], batch, key)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2 = time.perf_counter()
  state["compiled"] = lowered.compile()
  t3 = time.perf_counter()
  return {"trace_s": t1 - t0, "lower_s": t2 - t1, "xla_compile_s": t3 - t2,
          "compile_s": t3 - t0}


def _run(state, batch, key):
  """One step of the compiled program, waited for; returns the loss."""
  params, opt_state, metrics = state["compiled"](state["params"], state["opt_state"],
                                                 batch, key)
  jax.block_until_ready((params, opt_state, metrics))
  state["params"], state["opt_state"] = params, opt_state
  return metrics["loss"]


def make_deeprnn_model(cell: str, F: int, H: int, L: int, **opts) -> drnn.StackedRNN:
  """The deeprnn_jax stack under test; `opts` are extra `stacked_rnn` keyword arguments."""
  return drnn.stacked_rnn(cell, F, (H,) * L, **opts)


def deeprnn_workload(spec: Spec, opts: Optional[dict] = None, params=None,
                     seed: int = 0) -> Workload:
  """deeprnn_jax: `make_deeprnn_model` + dense head, the library's optimizer and step.

  Args:
    spec: the grid point.
    opts: keyword arguments for `stacked_rnn` (e.g. {"unroll": 2}), and "devices": N to
      split the batch over N devices (data parallel); labelled in `impl`.
    params: {"rnn": stack params, "head": {"w": [H, 1], "b": [1]}}; None to initialise.
    seed: of the initial parameters and the batch.
  """
  label = impl_label(dict(opts or {}))
  opts = dict(opts or {})
  mesh = _data_mesh(opts.pop("devices", 1))
  model = make_deeprnn_model(spec.cell, spec.features, spec.hidden, spec.depth, **opts)
  if params is None:
    k_rnn, k_head = jax.random.split(jax.random.key(seed))
    params = {"rnn": model.init(k_rnn), "head": _dense_head(k_head, spec.hidden)}

  def loss_fn(params, batch, *, key=None, train=False):
    xs, labels = batch
    ys, _ = model.apply(params["rnn"], xs, train=train, key=key)
    logits = ys[:, -1] @ params["head"]["w"] + params["head"]["b"]  # [B, 1]
    return drnn.sigmoid_binary_loss(logits[:, 0], labels)

  tx = drnn.optimizer(LEARNING_RATE, max_norm=MAX_NORM)
  return _jax_workload(label, drnn.make_train_step(loss_fn, tx), params, tx, spec, seed, mesh)


def _data_mesh(devices: int):
  """None for one device; else a 1-D mesh "data" over the first `devices` devices (on a
  CPU, virtual devices: `benchmarks/conftest.py` makes as many as the option sets ask)."""
  if devices == 1:
    return None
  if not isinstance(devices, int) or not 1 <= devices <= jax.device_count():
    raise ValueError(f"bench opts: devices: expected an int from 1 to the "
                     f"{jax.device_count()} devices at hand, got {devices!r}")
  return jax.make_mesh((devices,), ("data",), devices=jax.devices()[:devices])


class FlaxClassifier(nn.Module):
  """What a Flax user writes: a Python loop of `nn.RNN` layers, then `nn.Dense(1)`."""

  cell: str
  hidden: int
  depth: int

  @nn.compact
  def __call__(self, xs):
    h = xs
    for _ in range(self.depth):
      h = nn.RNN(FLAX_CELLS[self.cell](features=self.hidden))(h)  # [B, T, H]
    return nn.Dense(1)(h[:, -1])[:, 0]  # [B]


def flax_workload(spec: Spec, params=None, seed: int = 0) -> Workload:
  """Flax linen: `FlaxClassifier` with a hand-written optax step (plain `optax.chain`)."""
  module = FlaxClassifier(spec.cell, spec.hidden, spec.depth)
  if params is None:
    xs = jnp.zeros((spec.batch, spec.time, spec.features), jnp.float32)
    params = module.init(jax.random.key(seed), xs)["params"]
  tx = optax.chain(optax.clip_by_global_norm(MAX_NORM), optax.adam(LEARNING_RATE))

  def train_step(params, opt_state, batch, key):
    del key  # no dropout
    xs, labels = batch

    def loss_fn(params):
      logits = module.apply({"params": params}, xs)
      return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss}

  return _jax_workload("flax", train_step, params, tx, spec, seed)


def deeprnn_to_flax(cell: str, layers, head):
  """Flax `FlaxClassifier` params holding the same weights as deeprnn_jax's.

  Args:
    cell: "rnn", "lstm" or "gru".
    layers: one deeprnn_jax layer dict per layer ({"w_ih", "w_hh", "b"(, "b_hn")}).
    head: {"w": [H, 1], "b": [1]}.
  """
  out = {}
  for l, p in enumerate(layers):
    G = GATES[cell]
    w_ih, w_hh, b = (jnp.split(p[n], G, axis=-1) for n in ("w_ih", "w_hh", "b"))
    if cell == "rnn":
      c = {"i": {"kernel": w_ih[0], "bias": b[0]}, "h": {"kernel": w_hh[0]}}
    elif cell == "lstm":  # Flax puts the LSTM biases on the recurrent denses
      c = {}
      for k, g in enumerate("ifgo"):
        c["i" + g] = {"kernel": w_ih[k]}
        c["h" + g] = {"kernel": w_hh[k], "bias": b[k]}
    else:  # GRU: input biases on ir, iz, in; the recurrent n bias stays on hn
      c = {}
      for k, g in enumerate("rzn"):
        c["i" + g] = {"kernel": w_ih[k], "bias": b[k]}
        c["h" + g] = {"kernel": w_hh[k]}
      c["hn"]["bias"] = p["b_hn"]
    out[f"{FLAX_CELLS[cell].__name__}_{l}"] = c  # the cells are FlaxClassifier's children
  out["Dense_0"] = {"kernel": head["w"], "bias": head["b"]}
  return out


# -- PyTorch -----------------------------------------------------------------------------------

def torch_module(spec: Spec, seed: int = 0):
  """`nn.RNN/LSTM/GRU(num_layers=depth, batch_first=True)` + `nn.Linear(H, 1)`, on CPU."""
  import torch

  torch.manual_seed(seed)
  rnn_cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[spec.cell]

  class Classifier(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.rnn = rnn_cls(spec.features, spec.hidden, num_layers=spec.depth, batch_first=True)
      self.head = torch.nn.Linear(spec.hidden, 1)

    def forward(self, xs):
      ys, _ = self.rnn(xs)
      return self.head(ys[:, -1])[:, 0]

  return Classifier()


def torch_workload(spec: Spec, module=None, seed: int = 0) -> Workload:
  """PyTorch eager: forward, BCEWithLogits, backward, `clip_grad_norm_`, Adam.

  Uses every CPU core (`torch.set_num_threads(os.cpu_count())`), or CUDA where there is one
  (then `nn.LSTM`/`nn.GRU`/`nn.RNN` run cuDNN's fused kernels).
  """
  import torch

  torch.set_num_threads(os.cpu_count())
  cuda = torch.cuda.is_available()
  dev = torch.device("cuda" if cuda else "cpu")
  module = (module if module is not None else torch_module(spec, seed)).to(dev)
  opt = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)
  xs, labels = (torch.from_numpy(a).to(dev) for a in make_batch(spec, seed))
  loss_fn = torch.nn.BCEWithLogitsLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(module(xs), labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), MAX_NORM)
    opt.step()
    if cuda:
      torch.cuda.synchronize()
    return loss.detach()

  def memory():
    if cuda:  # since the last reset_peak_memory_stats, which the harness calls
      return {"device_peak_bytes": int(torch.cuda.max_memory_allocated())}
    return {}

  if cuda:
    torch.cuda.reset_peak_memory_stats()
    device = f"cuda: {torch.cuda.get_device_name()}"
  else:
    policy = os.environ.get("OMP_WAIT_POLICY", "default")  # as torch read it at import
    device = (f"cpu: {cpu_name()} (torch {torch.get_num_threads()} threads, "
              f"OMP_WAIT_POLICY={policy})")
  return Workload(impl="torch", param_count=sum(p.numel() for p in module.parameters()),
                  device=device, compile=lambda: {}, step=step, memory=memory)


def keras_model(spec: Spec, seed: int = 0):
  """The classifier as a Keras 3 `Sequential` on its JAX backend: `depth` Keras RNN layers
  (default options: GRUs with reset_after=True, the form our GRU computes), the last
  step's output, Dense(1) logits."""
  import keras

  if keras.backend.backend() != "jax":
    raise RuntimeError(f"keras: expected the jax backend (KERAS_BACKEND=jax before keras is "
                       f"imported), got {keras.backend.backend()!r}")
  keras.utils.set_random_seed(seed)
  layer = getattr(keras.layers, KERAS_LAYERS[spec.cell])
  return keras.Sequential(
      [keras.Input((spec.time, spec.features))]
      + [layer(spec.hidden, return_sequences=l < spec.depth - 1) for l in range(spec.depth)]
      + [keras.layers.Dense(1)])


def keras_workload(spec: Spec, weights=None, seed: int = 0) -> Workload:
  """Keras 3 on JAX, as its users train: `compile` (XLA-jitted train function, Adam with
  global-norm clipping, epsilon 1e-8 as optax and torch) and `train_on_batch`.

  Args:
    weights: optional `model.set_weights` list (the RNN layers' arrays, then the head's).
  """
  import keras

  model = keras_model(spec, seed)
  if weights is not None:
    model.set_weights(weights)
  model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, epsilon=1e-8,
                                                global_clipnorm=MAX_NORM),
                loss=keras.losses.BinaryCrossentropy(from_logits=True), jit_compile=True)
  xs, labels = make_batch(spec, seed)

  def step():  # returns the loss as a host float: train_on_batch has waited for the step
    return np.float32(model.train_on_batch(xs, labels))

  return Workload(impl="keras", param_count=int(model.count_params()),
                  device=f"{jax_device_name()} (keras {keras.__version__})",
                  compile=lambda: {}, step=step, memory=lambda: {})


def make_workload(impl: str, spec: Spec, opts: Optional[dict] = None) -> Workload:
  """The `Workload` of a base impl name ("deeprnn_jax", "flax", "torch") on `spec`."""
  if impl == "deeprnn_jax":
    return deeprnn_workload(spec, opts)
  if opts:
    raise ValueError(f"opts: only deeprnn_jax takes options, got {opts!r} for {impl!r}")
  if impl == "flax":
    return flax_workload(spec)
  if impl == "torch":
    return torch_workload(spec)
  if impl == "keras":
    return keras_workload(spec)
  raise ValueError(f"impl: expected one of {IMPLS}, got {impl!r}")
