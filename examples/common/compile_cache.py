"""A persistent XLA compilation cache for the trainers (`--compile-cache`).

A relaunched or repeated command then loads its compiled steps from disk instead of
compiling them again: a preempted job continues sooner, and a second run of a preset
skips most of its compilation (each run prints how many programs it loaded). JAX keys
every entry by the program, its shapes, the JAX and XLA versions, the compiler flags and the device, so a changed model, flag or machine
compiles afresh; a stale entry is never used.

`--compile-cache auto` (the default) uses $JAX_COMPILATION_CACHE_DIR when it is set (JAX's
own variable), else $XDG_CACHE_HOME/deeprnn_jax/xla (~/.cache/deeprnn_jax/xla);
`--compile-cache DIR` uses DIR; `--compile-cache off` compiles everything every time.
As JAX warns, the cache is trusted code: never point it at a directory others can write.
"""

import contextlib
import os
import sys

import jax

OFF = ("off", "none")
# JAX caches only programs that took >= 1 s to compile; the trainers' evaluation steps
# and the initialiser's QR take less and are recompiled on every relaunch without this
MIN_COMPILE_SECONDS = 0.1
EVENTS = {"/jax/compilation_cache/cache_hits": "loaded"}
counts = {"loaded": 0}
_listening = []


def resolve(setting):
  """The directory that --compile-cache SETTING names, or None (off)."""
  if setting is None or setting.lower() in OFF:
    return None
  if setting != "auto":
    return os.path.abspath(os.path.expanduser(setting))
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "deeprnn_jax", "xla")


def _count(event, **_):
  if event in EVENTS:
    counts[EVENTS[event]] += 1


@contextlib.contextmanager
def enabled(setting):
  """Within: JAX's persistent cache in resolve(setting) (None: off). JAX's settings are
  restored on exit (the trainer runs in-process in tests). JAX opens its cache once per
  process, so a second directory in the same process is not used; the trainers run once
  per process."""
  path = resolve(setting)
  if not _listening:
    jax.monitoring.register_event_listener(_count)
    _listening.append(True)
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  before = {name: getattr(jax.config, name) for name in names}
  if path:
    try:
      os.makedirs(path, exist_ok=True)
    except OSError as e:  # a cache only saves time: never a reason to stop a run
      print(f"warning: --compile-cache: cannot use {path} ({e.strerror}); compiling "
            f"without a cache", file=sys.stderr)
      path = None
  if path:
    jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  else:
    jax.config.update("jax_compilation_cache_dir", None)
  try:
    yield path
  finally:
    for name, value in before.items():
      jax.config.update(name, value)


def summary(path, since):
  """How many compiled programs came from the cache since `since` (a copy of counts)."""
  if path is None:
    return "compilation cache off"
  return f"{counts['loaded'] - since['loaded']} programs loaded from the compilation cache {path}"
