"""The layering of `deeprnn_jax/_src` (docs/architecture.md): imports point down only.

core < cells < loops < layers < schedules < the facade (stack, runner, registry) <
training < interop < adapters. A module may import its own subpackage and any below it,
never one above, and the import graph has no cycle. Read from the source (ast), so a
lazy import inside a function counts too; the registry's names are strings, not imports.
"""

import ast
import pathlib

import deeprnn_jax as drnn

SRC = pathlib.Path(drnn.__file__).parent / "_src"
LEVELS = {"core": 0, "cells": 1, "loops": 2, "layers": 3, "schedules": 4, "stack": 5,
          "runner": 5, "registry": 5, "training": 6, "interop": 7, "adapters": 8}


def _module(path):
  rel = path.relative_to(SRC).with_suffix("")
  parts = [p for p in rel.parts if p != "__init__"]
  return ".".join(parts)


def _imports(path):
  """The deeprnn_jax._src modules `path` imports (as dotted names below _src)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
        "deeprnn_jax._src"):
      base = node.module[len("deeprnn_jax._src."):] if node.module != "deeprnn_jax._src" else ""
      for alias in node.names:  # `from pkg import module` names a module too
        candidate = f"{base}.{alias.name}" if base else alias.name
        found.add(candidate if _exists(candidate) else base)
    elif isinstance(node, ast.Import):
      found |= {a.name[len("deeprnn_jax._src."):] for a in node.names
                if a.name.startswith("deeprnn_jax._src.")}
  return {m for m in found if m}


def _exists(dotted):
  path = SRC.joinpath(*dotted.split("."))
  return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph():
  return {_module(p): _imports(p) for p in SRC.rglob("*.py")}


def test_every_module_has_a_level():
  assert {m.split(".")[0] for m in graph() if m} <= set(LEVELS)


def upward_edges(g):
  return [(m, i) for m, imports in g.items() if m for i in imports
          if LEVELS[i.split(".")[0]] > LEVELS[m.split(".")[0]]]


def find_cycle(g):
  """One import cycle of `g` as a list of modules, or None."""
  state = {}

  def visit(m, path):
    if state.get(m) == "open":
      return path[path.index(m):] + [m]
    if state.get(m) == "done":
      return None
    state[m] = "open"
    for i in sorted(g.get(m, ())):
      found = visit(i, path + [m])
      if found:
        return found
    state[m] = "done"
    return None

  for m in sorted(g):
    found = visit(m, [])
    if found:
      return found
  return None


def test_imports_point_down_only():
  assert not upward_edges(graph())


def test_no_import_cycle():
  assert find_cycle(graph()) is None


def test_the_checks_can_fail():
  """An upward edge and a cycle, as the old time_loops <-> cudnn pair was, are found."""
  assert upward_edges({"core.checks": {"layers.base"}}) == [("core.checks", "layers.base")]
  assert find_cycle({"loops.a": {"loops.b"}, "loops.b": {"loops.a"}}) == [
      "loops.a", "loops.b", "loops.a"]
  assert "core.types" in graph() and "layers.base" in graph()["layers.zoneout"]


# every public name before the subpackages (commit ad6cc7d's __all__ and its lazy names)
PUBLIC_BEFORE = (
    "Cell", "LSTMState", "StackedRNN", "TimeLoop", "count_params", "cudnn_time_loop",
    "dropout", "from_keras", "from_torch", "gru", "keep_mask", "layer_params", "loop_layer",
    "lstm", "make_eval_step", "make_train_step", "optimizer", "pipeline",
    "pipeline_idle_fraction", "rnn", "scan_layer", "sigmoid_binary_loss", "stacked_rnn",
    "tbptt_apply", "tbptt_train", "to_keras", "to_torch", "FlaxStackedRNN",
    "NNXStackedRNN", "diagnostics")


def test_every_public_name_is_still_importable_and_listed():
  for name in PUBLIC_BEFORE:
    assert getattr(drnn, name) is not None, name
  assert set(PUBLIC_BEFORE) <= set(drnn.__all__)  # flax is installed for the tests
  for name in ("GradientNorms", "param_gradient_norms", "state_gradient_norms"):
    assert getattr(drnn.diagnostics, name)
  assert set(drnn.diagnostics.__all__) == {"GradientNorms", "param_gradient_norms",
                                           "state_gradient_norms"}  # no jax, jnp, optax
  for module in (drnn.cells, drnn.layers, drnn.loops, drnn.schedules, drnn.diagnostics):
    for name in module.__all__:
      assert getattr(module, name) is not None, (module.__name__, name)
