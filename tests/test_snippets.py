"""Every Python block of the README and the docs runs, as a reader would paste it.

Each ```python block is one test, run on its own (its imports included: blocks share
nothing) in a fresh namespace, in a temporary working directory, with JAX's default
dtype promotion (the suite's strict promotion is for the library's own tests). The line
before a block may say how it runs:

    <!-- snippet: skip (why) -->   not run: it needs a GPU or minutes (say which)
    <!-- snippet: devices N -->    run in a process of its own with N virtual CPU devices
"""

import os
import pathlib
import re
import subprocess
import sys

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
MARK = re.compile(r"<!-- snippet: (skip \((?P<why>[^)]+)\)|devices (?P<devices>\d+)) -->\s*$")
MAX_SKIPPED = 3  # GPU- or minutes-long blocks only; every other block runs


def snippets():
  """(page, line, code, mark) of every Python block."""
  found = []
  for page in PAGES:
    text = page.read_text()
    for match in BLOCK.finditer(text):
      line = text.count("\n", 0, match.start()) + 1
      before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
      mark = MARK.search(before)
      found.append((page.relative_to(REPO).as_posix(), line, match.group(1), mark))
  return found


SNIPPETS = snippets()


def test_there_are_snippets_and_few_are_skipped():
  assert len(SNIPPETS) >= 30, [s[:2] for s in SNIPPETS]
  skipped = [(page, line, mark["why"]) for page, line, _, mark in SNIPPETS
             if mark and mark["why"]]
  assert len(skipped) <= MAX_SKIPPED, skipped
  for page, line, why in skipped:
    assert re.search(r"GPU|minutes", why), (page, line, why)


def test_every_marker_sits_right_before_a_block():
  """A marker anywhere else would silently mark nothing."""
  for page in PAGES:
    lines = page.read_text().splitlines()
    for i, line in enumerate(lines):
      if line.startswith("<!-- snippet:"):
        assert MARK.search(line), (page, i + 1, line)
        assert i + 1 < len(lines) and lines[i + 1] == "```python", (page, i + 1)


@pytest.mark.parametrize("page, line, code, mark", SNIPPETS,
                         ids=[f"{page}:{line}" for page, line, _, _ in SNIPPETS])
def test_snippet_runs(page, line, code, mark, tmp_path, monkeypatch, capsys):
  if mark and mark["why"]:
    pytest.skip(mark["why"])
  monkeypatch.chdir(tmp_path)  # a block that writes a file writes it here
  if mark and mark["devices"]:
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={mark['devices']}"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{page}:{line}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return
  namespace = {"__name__": "__snippet__"}
  with jax.numpy_dtype_promotion("standard"):
    exec(compile(code, f"{page}:{line}", "exec"), namespace)  # noqa: S102
