"""Where and from what a result came: date, machine, library versions, code, command.

`collect()` returns a JSON-able dict for a results file. Nothing in it may stop a run: a
value that cannot be found (no git, no /proc/cpuinfo) is None.
"""

import datetime
import os
import platform
import shlex
import subprocess
import sys
from typing import Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_model() -> Optional[str]:
  """/proc/cpuinfo's "model name" (Linux x86), else what `platform` knows."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
          return value.strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or None


def _git(*args, cwd=HERE) -> Optional[str]:
  try:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.SubprocessError):  # no git, or it hung
    return None
  return proc.stdout if proc.returncode == 0 else None


def git_state(cwd=HERE) -> dict:
  """The commit checked out and whether the tree matches it (no changed or untracked
  files); None for both outside a git checkout or without git."""
  commit = _git("rev-parse", "HEAD", cwd=cwd)
  status = _git("status", "--porcelain", cwd=cwd) if commit else None
  return {"git_commit": commit.strip() if commit else None,
          "git_clean": None if status is None else status.strip() == ""}


def _versions() -> dict:
  versions = {"python": platform.python_version()}
  for name in ("jax", "jaxlib"):
    try:
      from importlib import metadata
      versions[name] = metadata.version(name)
    except Exception:  # noqa: BLE001 -- not installed, or broken metadata: unknown
      versions[name] = None
  return versions


def collect(argv: Optional[Sequence[str]] = None) -> dict:
  """Provenance of the current process; `argv`: its arguments (default sys.argv[1:])."""
  args = sys.argv[1:] if argv is None else list(argv)
  try:
    usable = len(os.sched_getaffinity(0))
  except (AttributeError, OSError):  # not on Linux
    usable = None
  return {"utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "platform": platform.platform(),
          "cpu": cpu_model(),
          "cpu_count": os.cpu_count(),
          "cpus_usable": usable,
          **_versions(),
          **git_state(),
          "command": shlex.join([sys.argv[0] or "python", *args])}
