"""Faults landed at a known step of the IMDB trainer, from the tests (the trainer has no hook).

In-process, around a call of `examples.imdb.main.run_main`:

    with fault_injection.injected("sigint:5"):
      main.run_main(args)

In a subprocess, for the faults that end the process (a real SIGKILL):

    python tests/fault_injection.py sigkill:13 ARGS...     # the trainer's flags after it

    nan:N              NaN weights in the batch of global step N (a non-finite loss)
    sigint:N           the process sends itself SIGINT during global step N
    sigterm:N          the process sends itself SIGTERM during global step N
    sigkill:N          the process sends itself SIGKILL during global step N
    sigkill-in-save:N  SIGKILL inside the N-th checkpoint save, its arrays written but the
                       step directory not yet renamed into place

It wraps the trainer's own functions: `train.train_epoch` (its train steps, which know
the global step from the run they update) and orbax's JSON handler's `finalize` (the
metadata item of every checkpoint, written after the arrays and before the rename).
A signal sent during step N is handled as one arriving then: the trainer finishes step N
(and its checkpoint, if N is a checkpoint step), then stops.
"""

import contextlib
import os
import pathlib
import signal
import sys
from typing import NamedTuple

KINDS = ("nan", "sigint", "sigkill", "sigkill-in-save", "sigterm")
SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


class Fault(NamedTuple):
  kind: str
  at: int  # the global step, or for sigkill-in-save the count of checkpoint saves


def parse(text: str) -> Fault:
  """The fault "KIND:N" names; ValueError for anything else."""
  kind, _, at = text.partition(":")
  if kind not in KINDS or not at.isdigit() or int(at) < 1:
    raise ValueError(f"expected KIND:N with KIND one of {', '.join(KINDS)} and N a step or "
                     f"save count >= 1, got {text!r}")
  return Fault(kind, int(at))


def _steps_with(fault, run, train_step):
  """The compiled train steps (by time length), each raising the fault at its step."""
  import jax.numpy as jnp

  def wrap(step_fn):
    def call(params, opt_state, batch, key):
      step = run["global_step"] + 1  # the trainer counts the step after dispatching it
      if fault == ("nan", step):
        batch = {**batch, "weights": jnp.full_like(batch["weights"], jnp.nan)}
      out = step_fn(params, opt_state, batch, key)
      if fault.kind in SIGNALS and fault.at == step:
        os.kill(os.getpid(), SIGNALS[fault.kind])
      return out
    return call

  return {t: wrap(f) for t, f in train_step.items()}


@contextlib.contextmanager
def injected(text: str):
  """Within: the trainer raises the fault `text` names ("KIND:N")."""
  import orbax.checkpoint as ocp
  from examples.imdb import train
  fault = parse(text)
  original_epoch, original_finalize = train.train_epoch, ocp.JsonCheckpointHandler.finalize
  saves = [0]

  def train_epoch(run, cfg, data, train_step, stop, *args, **kwargs):
    return original_epoch(run, cfg, data, _steps_with(fault, run, train_step), stop, *args,
                          **kwargs)

  def finalize(self, directory):
    original_finalize(self, directory)
    saves[0] += 1
    if fault == ("sigkill-in-save", saves[0]):
      os.kill(os.getpid(), signal.SIGKILL)

  train.train_epoch = train_epoch
  ocp.JsonCheckpointHandler.finalize = finalize
  try:
    yield fault
  finally:
    train.train_epoch = original_epoch
    ocp.JsonCheckpointHandler.finalize = original_finalize


if __name__ == "__main__":
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the checkout
  from examples.imdb import main
  with injected(sys.argv[1]):
    sys.exit(main.run_main(sys.argv[2:]))
