"""What both trainers' command lines share: checked numbers and widths, the default output
directory, and Ctrl-C / SIGTERM as a request to stop at the next step."""

import argparse
import datetime
import math
import os
import signal


def number(kind, low, low_ok=True, high=None):
  """An argparse type: a finite `kind` (int or float) >= low (> low if not low_ok), < high."""

  def parse(text):
    try:
      value = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}")
    if not math.isfinite(value):  # nan compares False with every bound: reject it here
      raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value < low or (value == low and not low_ok) or (high is not None and value >= high):
      bound = f"{'>=' if low_ok else '>'} {low}" + (f" and < {high}" if high else "")
      raise argparse.ArgumentTypeError(f"expected a value {bound}, got {text!r}")
    return value

  return parse


def widths(example):
  """An argparse type: comma-separated positive layer widths, e.g. `example` "5,5"."""

  def parse(text):
    try:
      sizes = tuple(int(h) for h in text.split(","))
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected comma-separated widths like {example}, "
                                       f"got {text!r}")
    if not sizes or min(sizes) <= 0:
      raise argparse.ArgumentTypeError(f"expected positive widths like {example}, got {text!r}")
    return sizes

  return parse


def default_out(name):
  """runs/NAME/<UTC date and time>: a fresh directory for each run not given --out."""
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", name, stamp)


def on_signals(stop):
  """Turns SIGINT and SIGTERM into `stop["signal"] = name`, a request to stop after the
  current step (a second one stops at once); returns the previous handlers."""

  def handler(signum, frame):
    if stop["signal"]:  # a second Ctrl-C: stop now
      raise KeyboardInterrupt
    stop["signal"] = signal.Signals(signum).name

  return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def restore_signals(previous):
  for s, handler in previous.items():
    signal.signal(s, handler)


def time_loops(rnn) -> str:
  """Which time loop each layer of `rnn` runs and why (`drnn.time_loop_choices`), in one
  line: equal neighbours merged, e.g. "layers 0-1: onednn (LSTM of width 64 ...)"."""
  import deeprnn_jax as drnn
  parts, run = [], []
  for c in drnn.time_loop_choices(rnn) + [None]:
    if run and (c is None or (c.time_loop, c.reason) != (run[0].time_loop, run[0].reason)):
      span = f"layer {run[0].layer}" if len(run) == 1 else \
          f"layers {run[0].layer}-{run[-1].layer}"
      parts.append(f"{span}: {run[0].time_loop} ({run[0].reason})")
      run = []
    if c is not None:
      run.append(c)
  return "time loops: " + "; ".join(parts)
