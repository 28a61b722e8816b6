"""The library's numbers on a grid of options, recorded so that a refactor can prove it
changed none of them (the core redesign promises bit-identical results on the CPU).

    python tests/golden.py          # records tests/golden/outputs.npz from the current code
    python tests/golden.py --compute OUT.npz   # the same arrays into OUT.npz (the test's)

`tests/test_golden.py` recomputes every entry and compares. What is recorded, per grid
point: `init`'s params, `apply`'s every-layer outputs and final state (with lengths, and
with `train=True` where the point has dropout), the gradients of a scalar loss with
respect to params and inputs, and three `step`s of a unidirectional stack.
"""

import itertools
import json
import os
import pathlib
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import deeprnn_jax as drnn

PATH = pathlib.Path(__file__).parent / "golden" / "outputs.npz"
B, T, F = 3, 5, 3
WIDTHS = (4, 5, 5)  # a shape-changing layer, then a depth-scanned group of two
# XLA's backend optimisations off: 2-3x cheaper to compile; what is compared is the
# program the library builds, which a refactor must keep
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
CELLS = (("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None))
OPTIONS = {  # name -> (stacked_rnn options, train)
    "plain": ({}, False),
    "bidirectional-residual": ({"bidirectional": True, "residual": True}, False),
    "dropout-residual": ({"dropout": 0.3, "residual": True}, True),
    "variational-recurrent": ({"dropout": 0.3, "variational": True,
                               "recurrent_dropout": 0.25}, True),
    "bidirectional-recurrent": ({"bidirectional": True, "recurrent_dropout": 0.25}, True),
    "wavefront-dropout": ({"schedule": "wavefront", "dropout": 0.3, "residual": True}, True),
    "remat-unroll": ({"remat": True, "unroll": 2}, False),
    "bf16": ({"compute_dtype": jnp.bfloat16, "residual": True}, False),
    "layer-norm": ({"layer_norm": True, "dropout": 0.2}, True),
    "layer-norm-bf16-wavefront": ({"layer_norm": True, "compute_dtype": jnp.bfloat16,
                                   "schedule": "wavefront"}, False),
}


def grid():
  """(name, cell, nonlinearity, options, train) of every recorded point."""
  for (cell, nl), (opt, (kwargs, train)) in itertools.product(CELLS, OPTIONS.items()):
    if kwargs.get("layer_norm") and cell == "rnn":
      continue
    yield f"{cell}-{nl or ''}-{opt}", cell, nl, kwargs, train


def _flat(prefix, tree):
  return {f"{prefix}/{jax.tree_util.keystr(path)}": np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def compute(cell, nl, kwargs, train):
  """Every recorded array of one grid point, keyed by what it is."""
  model = drnn.stacked_rnn(cell, F, WIDTHS, nonlinearity=nl, **kwargs)
  params = model.init(jax.random.key(0))
  rng = np.random.default_rng(1)
  xs = jnp.asarray(rng.standard_normal((B, T, F)), jnp.float32)
  lengths = jnp.asarray([T, 2, 0], jnp.int32)
  key = jax.random.key(2) if train else None
  head = jnp.asarray(rng.standard_normal((B, T, model.hidden_sizes[-1] * (
      2 if model.bidirectional else 1))), jnp.float32)

  def loss(params, xs):
    ys, state = model.apply(params, xs, lengths, train=train, key=key, output="all")
    return jnp.sum(ys[-1].astype(jnp.float32) * head), (ys, state)

  (value, (ys, state)), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True),
                                  compiler_options=FAST_COMPILE)(
      params, xs)
  out = {**_flat("init", params), **_flat("ys", ys), **_flat("state", state),
         **_flat("grads", grads), "loss": np.asarray(value)}
  if not model.bidirectional:
    carry = model.initial_state(B)
    step = jax.jit(model.step, compiler_options=FAST_COMPILE)
    for t in range(3):
      carry, y = step(params, carry, xs[:, t])
      out[f"step{t}"] = np.asarray(y)
    out.update(_flat("step_state", carry))
  return out


def compute_all():
  """{"point|key": array} of the whole grid; bf16 arrays as their uint16 bits."""
  arrays = {}
  for name, cell, nl, kwargs, train in grid():
    for k, v in compute(cell, nl, kwargs, train).items():
      arrays[f"{name}|{k}"] = v.view(np.uint16) if v.dtype == jnp.bfloat16 else v
  return arrays


def record_all():
  arrays = compute_all()
  commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=PATH.parents[1]).stdout.strip()
  meta = {"commit": commit, "cpu": cpu_model(), "jax": jax.__version__, "cpus": cpus(),
          "xla_flags": xla_flags(), "isa": isa()}
  arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  PATH.parent.mkdir(exist_ok=True)
  np.savez_compressed(PATH, **arrays)
  return meta, len(arrays) - 1


def cpus():
  """How many CPUs this process may run on (XLA:CPU sizes its thread pool by them)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def isa():
  """The CPU's vector instruction sets, which XLA compiles for: two machines of one model
  name (a VM's "AMD EPYC") may differ here, and then round differently."""
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("flags"):
        return " ".join(sorted(f for f in line.split(":", 1)[1].split()
                               if f.startswith(("sse", "avx", "fma", "f16c", "amx"))))
  except OSError:
    pass
  return platform.machine()


def xla_flags():
  return os.environ.get("XLA_FLAGS", "")


def cpu_model():
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def load():
  """(meta, {key: array}) of the recording; bf16 arrays come back as bf16."""
  with np.load(PATH) as f:
    data = {k: f[k] for k in f.files}
  meta = json.loads(bytes(data.pop("__meta__")).decode())
  return meta, data


if __name__ == "__main__":
  # The recording predates the hoisted input projection (`loops/tuning.py`), which sums
  # the same products in another order: the grid pins the in-loop numbers bit for bit,
  # and tests/test_hoist.py checks hoisted == in-loop to float32 rounding.
  from deeprnn_jax._src.loops import tuning
  tuning.tables()["hoist"].clear()
  if sys.argv[1:2] == ["--compute"]:  # tests/test_golden.py: the grid, into sys.argv[2]
    np.savez(sys.argv[2], **compute_all())
    sys.exit(0)
  meta, n = record_all()
  print(f"recorded {n} arrays at {meta} into {PATH}", file=sys.stderr)
