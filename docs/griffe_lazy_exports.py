"""Griffe extensions for the API reference (mkdocstrings reads the docstrings with griffe).

- `LazyExports`: `deeprnn_jax.FlaxStackedRNN` and `NNXStackedRNN` are in `__all__` but
  imported by the package's module `__getattr__` (so that `import deeprnn_jax` needs no
  Flax), which static analysis cannot follow. Each such name is added to the package as
  an alias of the object the import gives, so the reference documents it by its public
  path.
- `Shapes`: docstrings write shapes as `[batch, time, features]` (STYLE.md); Markdown
  would read two such groups in a row as a reference link. Outside code spans they are
  escaped, so they render as written. An argument list whose names run over a line
  (`a, b, c,` then `d: ...`) is joined onto one line, as the Google style parser wants.
"""

import importlib
import re

import griffe

_SHAPE = re.compile(r"\[([^\[\]`]*,[^\[\]`]*)\]")  # a bracket group holding a comma
_NAMES_GO_ON = re.compile(r"^(\s+)(\w+(?:, \w+)*,)\n\s+(\w+(?:, \w+)*:)", re.M)


def _escape_shapes(text):
  parts = text.split("`")
  return "`".join(_SHAPE.sub(r"\\[\1\\]", p) if i % 2 == 0 else p
                  for i, p in enumerate(parts))


class LazyExports(griffe.Extension):

  def on_package(self, *, pkg, loader, **kwargs):
    if pkg.name != "deeprnn_jax":
      return
    module = importlib.import_module("deeprnn_jax")
    for name in module.__all__:
      if name not in pkg.members:
        obj = getattr(module, name)
        pkg.set_member(name, griffe.Alias(name, f"{obj.__module__}.{obj.__qualname__}"))


class Shapes(griffe.Extension):

  def on_instance(self, *, obj, **kwargs):
    doc = getattr(obj, "docstring", None)
    if doc is not None and doc.value:
      doc.value = _escape_shapes(_NAMES_GO_ON.sub(r"\1\2 \3", doc.value))
