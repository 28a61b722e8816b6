"""Do two versions of the library compile the same program? A refactor's speed check
that needs no timing: identical XLA programs run in identical time.

    python benchmarks/tools/compare_programs.py --old dcb70a8
    python benchmarks/tools/compare_programs.py --old dcb70a8 --markdown benchmarks/results/redesign-programs.md

For each configuration (a 4-layer stack, H=128, B=64, T=100, F=32, the gradient of a sum
of its outputs) it compiles the program with the library of commit `--old` (checked out
into a temporary git worktree) and with the working tree's, strips what only names the
source (metadata, file and function tables, instruction numbering) and compares.
"""

import argparse
import hashlib
import json
import pathlib
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = [("lstm", {}), ("gru", {}), ("rnn", {}), ("lstm", {"dropout": 0.2, "residual": True}),
           ("gru", {"schedule": "wavefront"}), ("lstm", {"bidirectional": True}),
           ("gru", {"compute_dtype": "bfloat16"}), ("lstm", {"remat": True})]

DUMP = r'''
import json, re, sys
import jax, jax.numpy as jnp
import deeprnn_jax as drnn
out = []
for kind, opts in json.loads(sys.argv[1]):
  if "compute_dtype" in opts:
    opts["compute_dtype"] = jnp.dtype(opts["compute_dtype"])
  m = drnn.stacked_rnn(kind, 32, (128,) * 4, **opts)
  p = m.init(jax.random.key(0))
  xs, lengths = jnp.ones((64, 100, 32)), jnp.full((64,), 100, jnp.int32)
  train = opts.get("dropout", 0) > 0
  key = jax.random.key(1) if train else None
  loss = lambda p: jnp.sum(m.apply(p, xs, lengths, train=train, key=key)[0].astype(jnp.float32))
  out.append(jax.jit(jax.grad(loss)).lower(p).compile().as_text())
print(json.dumps({"file": drnn.__file__, "programs": out}))
'''


def stripped(text):
  """The program without what only names the source."""
  text = re.sub(r",? ?metadata=\{[^}]*\}", "", text)
  keep, skip = [], False
  for line in text.splitlines():
    if re.match(r"^(FileNames|FunctionNames|FileLocations|StackFrames)", line):
      skip = True
      continue
    if re.match(r"^(%|ENTRY|HloModule)", line):
      skip = False
    if not skip:
      keep.append(line)
  return re.sub(r"stack_frame_id=[0-9]+", "", re.sub(r"\.[0-9]+", "", "\n".join(keep)))


def programs(root):
  proc = subprocess.run([sys.executable, "-c", DUMP, json.dumps(CONFIGS)], cwd=root,
                        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                        capture_output=True, text=True, check=True)
  data = json.loads(proc.stdout.splitlines()[-1])
  assert data["file"].startswith(str(root)), data["file"]
  return [stripped(t) for t in data["programs"]]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--old", required=True, help="the git commit to compare with")
  p.add_argument("--markdown", type=pathlib.Path)
  args = p.parse_args(argv)
  new_commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True).stdout.strip()
  dirty = bool(subprocess.run(["git", "status", "--porcelain", "deeprnn_jax"], cwd=REPO,
                              capture_output=True, text=True).stdout.strip())
  with tempfile.TemporaryDirectory() as tmp:
    old_root = pathlib.Path(tmp) / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_root), args.old], cwd=REPO,
                   check=True, capture_output=True)
    try:
      old = programs(old_root)
    finally:
      subprocess.run(["git", "worktree", "remove", "--force", str(old_root)], cwd=REPO,
                     capture_output=True)
  new = programs(REPO)
  lines = [f"Compiled training-step programs (gradient of a 4-layer stack, H=128, B=64, T=100, "
           f"F=32): library at {args.old} vs {new_commit}"
           f"{' (uncommitted changes in deeprnn_jax/)' if dirty else ''}; "
           f"`python benchmarks/tools/compare_programs.py --old {args.old}`.", "",
           "| cell | options | same program | instructions old / new |", "|---|---|---|---|"]
  for (kind, opts), a, b in zip(CONFIGS, old, new):
    count = lambda t: sum(1 for line in t.splitlines() if " = " in line)
    same = hashlib.sha1(a.encode()).digest() == hashlib.sha1(b.encode()).digest()
    lines.append(f"| {kind} | `{json.dumps(opts)}` | {'yes' if same else 'no'} | "
                 f"{count(a)} / {count(b)} |")
  text = "\n".join(lines) + "\n"
  print(text)
  if args.markdown:
    args.markdown.write_text(text)


if __name__ == "__main__":
  main()
