"""Mutation check: small wrong changes to the library, each of which some test must catch.

Every mutant replaces one exact snippet of `deeprnn_jax/` in a scratch copy of the
repository, then runs the tests most likely to notice (stopping at the first failure).
A mutant is *caught* when those tests fail, *missed* when they pass; a snippet that is no
longer in the source is an error, so the list cannot silently go stale when the code moves.

    python tests/mutation.py                # every mutant; prints the Markdown table
    python tests/mutation.py dropout-scale  # the named ones
    python tests/mutation.py --list
    python tests/mutation.py --write        # every mutant; the table into tests/MUTANTS.md

`tests/test_mutation.py` runs a quick part of this list in CI.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple, Tuple

REPO = pathlib.Path(__file__).resolve().parents[1]


class Mutant(NamedTuple):
  name: str
  what: str  # the wrong change, in words
  path: str  # relative to the repository root
  old: str   # an exact snippet that occurs once in `path`
  new: str
  tests: Tuple[str, ...]  # pytest node ids or files, run in this order with -x


REF = "tests/test_reference.py"
PROPS = "tests/test_properties.py"
MUTANTS = (
    Mutant("dropout-scale", "inverted dropout without its 1/(1-rate) scale",
           "deeprnn_jax/_src/layers/dropout.py", "jnp.where(keep, x * scale, 0)",
           "jnp.where(keep, x, 0)", (REF,)),
    Mutant("bf16-in-f32", "bf16 matmuls silently run in float32",
           "deeprnn_jax/_src/core/dtypes.py",
           "jnp.matmul(a.astype(w.dtype), w, preferred_element_type=out_dtype)",
           "jnp.matmul(a.astype(out_dtype), w.astype(out_dtype), "
           "preferred_element_type=out_dtype)", ("tests/test_claims.py",)),
    Mutant("fast-path-off", "the custom-JVP gradient off by default",
           "deeprnn_jax/_src/loops/tuning.py",
           'return speedup("fast_grad", kind, backend, width) > 1.0',
           "return False", ("tests/test_claims.py",)),
    Mutant("hoist-off", "the input projection never hoisted by default",
           "deeprnn_jax/_src/loops/tuning.py",
           'return speedup("hoist", kind, backend, (width, input_size)) >= HOIST_MARGIN',
           "return False",
           ("tests/test_hoist.py",)),
    Mutant("lstm-gate-order", "LSTM gates read in the order i, f, o, g",
           "deeprnn_jax/_src/cells/lstm_cell.py", "i, f, g, o = jnp.split(gates, 4, axis=-1)",
           "i, f, o, g = jnp.split(gates, 4, axis=-1)", ("tests/test_torch_parity.py", REF)),
    Mutant("forget-bias-block", "the forget bias written into the input gate's block",
           "deeprnn_jax/_src/cells/lstm_cell.py", 'params["b"].at[H:2 * H]', 'params["b"].at[0:H]',
           ("tests/test_stack.py::test_initializers_selectable_and_forget_bias",)),
    Mutant("gru-b_hn-outside-r", "GRU: b_hn added outside r * (.)",
           "deeprnn_jax/_src/cells/gru_cell.py", 'n = jnp.tanh(xn + r * hnb)',
           'n = jnp.tanh(xn + r * hn + params["b_hn"])', ("tests/test_torch_parity.py", REF)),
    Mutant("gru-reset-before", "GRU reset-before (r * h) @ W_hn instead of reset-after",
           "deeprnn_jax/_src/cells/gru_cell.py", 'n = jnp.tanh(xn + r * hnb)',
           'n = jnp.tanh(xn + jnp.matmul((r * h).astype(params["w_hh"].dtype), '
           'params["w_hh"][:, 2 * h.shape[-1]:], preferred_element_type=params["b"].dtype) '
           '+ params["b_hn"])', ("tests/test_torch_parity.py", REF)),
    Mutant("length-mask-off-by-one", "the time scan keeps step t = lengths[b] valid",
           "deeprnn_jax/_src/loops/scan.py",
           "    new_c, y = advance(params, c, x_t)\n    return _mask_step(t < lengths, new_c, c, y)",
           "    new_c, y = advance(params, c, x_t)\n    return _mask_step(t <= lengths, new_c, c, y)",
           (REF, PROPS)),
    Mutant("fast-length-mask-off-by-one", "the custom-JVP scan keeps t = lengths[b] valid",
           "deeprnn_jax/_src/core/masking.py",
           "return jnp.arange(time, dtype=lengths.dtype)[:, None] < lengths[None]",
           "return jnp.arange(time, dtype=lengths.dtype)[:, None] <= lengths[None]",
           (REF, PROPS)),
    Mutant("reverse-from-T-1", "the backward direction starts at T-1, not lengths[b]-1",
           "deeprnn_jax/_src/layers/base.py",
           "ctx.time_loop(c, p, h, carry, ctx.lengths, reverse=ctx.direction == 1,",
           "ctx.time_loop(c, p, h, carry, None if ctx.direction else ctx.lengths, "
           "reverse=ctx.direction == 1,", (REF, "tests/test_bidirectional.py")),
    Mutant("residual-across-widths", "a residual that adds a narrower layer's input slice",
           "deeprnn_jax/_src/layers/residual.py",
           "if y.shape[-1] == h.shape[-1]:\n      y = y + jnp.where(ctx.index > 0, h, 0)",
           "if y.shape[-1] <= h.shape[-1]:\n"
           "      y = y + jnp.where(ctx.index > 0, h[..., :y.shape[-1]], 0)", (REF, PROPS)),
    Mutant("clip-threshold", "global-norm clipping at twice the requested bound",
           "deeprnn_jax/_src/training/steps.py", "optax.clip_by_global_norm(float(max_norm))",
           "optax.clip_by_global_norm(2 * float(max_norm))", ("tests/test_train.py",)),
    Mutant("carry-in-compute-dtype", "the state kept in the compute dtype (bf16) too",
           "deeprnn_jax/_src/core/dtypes.py",
           "  return a if bits_a > bits_b else b\n",
           "  return b\n", ("tests/test_layer_norm.py", "tests/test_features.py", PROPS)),
    Mutant("padding-read", "inputs past `lengths` reach the time loops (NaN gradients)",
           "deeprnn_jax/_src/core/masking.py",
           "return jnp.where(valid[:, :, None], xs, jnp.zeros((), xs.dtype))", "return xs",
           ("tests/test_reliability.py::test_non_finite_padding_changes_nothing",)),
    Mutant("lstm-state-unexportable", "LSTMState not registered for jax.export",
           "deeprnn_jax/_src/core/types.py",
           'jax.export.register_namedtuple_serialization(LSTMState, '
           'serialized_name="deeprnn_jax.LSTMState")', "pass",
           ("tests/test_reliability.py::test_apply_exports_with_symbolic_batch_and_time",)),
    Mutant("zoneout-eval-no-expectation", "zoneout at evaluation keeps nothing of h_{t-1}",
           "deeprnn_jax/_src/layers/zoneout.py",
           "keeps = [jnp.asarray(r, n.dtype) for r, n in zip(rates, news)]",
           "keeps = [jnp.asarray(0.0, n.dtype) for r, n in zip(rates, news)]",
           ("tests/test_zoneout.py",)),
    Mutant("recurrent-mask-by-kind", "the GRU's recurrent dropout masks h before the step",
           "deeprnn_jax/_src/cells/gru_cell.py",
           'standard="gru", recurrent_mask="weights")', 'standard="gru")',
           ("tests/test_reference.py",)),
)
BY_NAME = {m.name: m for m in MUTANTS}


# An editable install (scikit-build-core's) maps `deeprnn_jax` to the checkout with a
# finder ahead of sys.path; in the copy's processes this drops it, so that the copy's
# package (first on PYTHONPATH) is the one imported. The compiled kernel stays the
# installed one: no mutant touches it.
SITECUSTOMIZE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if type(f).__name__ != "ScikitBuildRedirectingFinder"]
"""


def _copy_repo(dest):
  ignore = shutil.ignore_patterns(".git", ".venv", ".ci-venv", "runs", "__pycache__",
                                  ".pytest_cache", ".hypothesis", ".benchmarks", "*.png",
                                  "*_runs")
  shutil.copytree(REPO, dest, ignore=ignore)
  (pathlib.Path(dest) / "sitecustomize.py").write_text(SITECUSTOMIZE)


def _apply(mutant, root):
  path = pathlib.Path(root) / mutant.path
  source = path.read_text()
  count = source.count(mutant.old)
  if count != 1:
    raise RuntimeError(f"mutant {mutant.name}: expected its snippet once in {mutant.path}, "
                       f"found it {count} times; update MUTANTS to the current source")
  path.write_text(source.replace(mutant.old, mutant.new))


def _env(root):
  # the scratch copy first on sys.path, ahead of the editable install of the real one
  env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
  env.setdefault("CI", "true")  # no skips: a skipped test catches nothing
  return env


def run(mutant, timeout=900):
  """Runs one mutant: ("caught" | "missed", the test that failed or "", seconds)."""
  start = time.perf_counter()
  with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
    root = pathlib.Path(tmp) / "repo"
    _copy_repo(root)
    _apply(mutant, root)
    env = _env(root)
    where = subprocess.run([sys.executable, "-c", "import deeprnn_jax; print(deeprnn_jax.__file__)"],
                           cwd=root, env=env, capture_output=True, text=True, check=True)
    if not where.stdout.strip().startswith(str(root)):
      raise RuntimeError(f"the mutated copy was not imported: {where.stdout.strip()}")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                           "--benchmark-disable", "-rf", *mutant.tests], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)
  failed = [line.split(" ")[1] for line in proc.stdout.splitlines() if line.startswith("FAILED ")]
  status = "missed" if proc.returncode == 0 else "caught"
  if proc.returncode not in (0, 1):  # a crash or a collection error also catches it
    failed = failed or [f"pytest exit {proc.returncode}"]
  return status, (failed[0] if failed else ""), time.perf_counter() - start


def table(results):
  rows = ["| mutant | the wrong change | result | first failing test | s |",
          "| --- | --- | --- | --- | ---: |"]
  for m, (status, test, seconds) in results:
    rows.append(f"| `{m.name}` | {m.what} | {status} | `{test}` | {seconds:.0f} |")
  return "\n".join(rows)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
  parser.add_argument("--list", action="store_true", help="list the mutants and exit")
  parser.add_argument("--write", action="store_true",
                      help="also write the table, with its provenance, to tests/MUTANTS.md")
  args = parser.parse_args(argv)
  if args.list:
    for m in MUTANTS:
      print(f"{m.name}: {m.what}")
    return 0
  unknown = [n for n in args.names if n not in BY_NAME]
  if unknown:
    parser.error(f"names: expected mutants from --list, got {unknown}")
  chosen = [BY_NAME[n] for n in args.names] if args.names else list(MUTANTS)
  results = []
  for m in chosen:
    results.append((m, run(m)))
    print(f"{m.name}: {results[-1][1][0]} ({results[-1][1][2]:.0f} s) {results[-1][1][1]}",
          file=sys.stderr, flush=True)
  print(table(results))
  if args.write:
    write(results)
  return 0 if all(r[0] == "caught" for _, r in results) else 1


def write(results):
  sys.path.insert(0, str(REPO / "examples" / "imdb"))
  import provenance
  origin = provenance.collect([])
  caught = sum(r[0] == "caught" for _, r in results)
  head = (f"# Mutants\n\nGenerated by `python tests/mutation.py --write` on "
          f"{origin['utc']}, {origin['cpu']}, commit {origin['git_commit']}"
          f"{'' if origin['git_clean'] else ' (tree with uncommitted changes)'}: "
          f"{caught} of {len(results)} mutants caught. Each row is one wrong change to "
          f"`deeprnn_jax/` and the first test that failed on it (tests/mutation.py lists "
          f"the snippets and the tests run for each).\n\n")
  (REPO / "tests" / "MUTANTS.md").write_text(head + table(results) + "\n")


if __name__ == "__main__":
  sys.exit(main())
