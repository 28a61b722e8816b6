"""Test-only fault injection for the trainer, reached through one environment variable.

    DEEPRNN_TEST_FAULT=KIND:N python examples/imdb/train.py ...

    nan:N              NaN weights in the batch of global step N (a non-finite loss)
    sigint:N           the process sends itself SIGINT after global step N
    sigterm:N          the process sends itself SIGTERM after global step N
    sigkill:N          the process sends itself SIGKILL after global step N
    sigkill-in-save:N  SIGKILL inside the N-th checkpoint save of the process, its
                       arrays written but the step directory not yet renamed into place

A variable rather than a flag: it can kill the process, so it stays out of the trainer's
--help, its saved configuration and its metrics. tests/test_trainer_faults.py uses it to
land each fault at a known place; nothing happens while the variable is unset or empty.
"""

import os
import signal
from typing import NamedTuple, Optional

VARIABLE = "DEEPRNN_TEST_FAULT"
KINDS = ("nan", "sigint", "sigkill", "sigkill-in-save", "sigterm")


class FaultError(ValueError):
  """$DEEPRNN_TEST_FAULT holds something that is not a fault."""


class Fault(NamedTuple):
  kind: str
  at: int  # the global step, or for sigkill-in-save the count of checkpoint saves


def parse(text: Optional[str]) -> Optional[Fault]:
  """The fault `text` ("KIND:N") names; None for None or ""; FaultError otherwise."""
  if not text:
    return None
  kind, _, at = text.partition(":")
  if kind not in KINDS or not at.isdigit() or int(at) < 1:
    raise FaultError(f"${VARIABLE} (a test hook): expected KIND:N with KIND one of "
                     f"{', '.join(KINDS)} and N a step or save count >= 1, got {text!r}")
  return Fault(kind, int(at))


_armed = None  # the fault of this process, set by arm()
_saves = 0  # checkpoint saves since arm(), for sigkill-in-save


def arm(environ=os.environ) -> Optional[Fault]:
  """Reads the variable once per run (a run_main() in a test process is a fresh run)."""
  global _armed, _saves
  _armed, _saves = parse(environ.get(VARIABLE)), 0
  return _armed


def _is(kind, at):
  return _armed is not None and _armed == (kind, at)


def poison(batch: dict, step: int) -> dict:
  """The batch of global step `step`, its weights NaN if a nan fault is armed there."""
  if _is("nan", step):
    import numpy as np
    return {**batch, "weights": np.full_like(batch["weights"], np.nan)}
  return batch


def after_step(step: int) -> None:
  if _is("sigint", step):
    os.kill(os.getpid(), signal.SIGINT)
  elif _is("sigterm", step):
    os.kill(os.getpid(), signal.SIGTERM)
  elif _is("sigkill", step):
    os.kill(os.getpid(), signal.SIGKILL)


def in_save(directory: str) -> None:
  """Called by checkpoint.save inside orbax's save, once the step's arrays are written into
  its temporary directory (`directory` is inside it) and before that is renamed into
  place: a SIGKILL there is a crash inside the save."""
  global _saves
  if _armed is None or _armed.kind != "sigkill-in-save":
    return
  _saves += 1
  if _saves == _armed.at:
    os.kill(os.getpid(), signal.SIGKILL)
