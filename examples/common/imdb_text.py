"""The IMDB example's modules that this example reuses, unchanged.

Importing this module appends examples/imdb to `sys.path` (appended, not prepended, so
that this example's own config, input_pipeline and model come first), after which
`import checkpoint` (atomic orbax checkpoints with fingerprints; it imports faults) and
`import provenance` find the IMDB example's. Its input pipeline (the tokenizer, the
data-dir checks and the tfds reader) shares its module name with ours, so it is loaded
from its file as `imdb_input_pipeline`: `reuse.imdb_pipeline`; its config likewise, as
`reuse.imdb_config` (the flags' number parser).
"""

import importlib.util
import os
import sys

IMDB = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                     "imdb"))
if IMDB not in sys.path:
  sys.path.append(IMDB)


def _load(name, alias):
  if alias not in sys.modules:
    spec = importlib.util.spec_from_file_location(alias, os.path.join(IMDB, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
  return sys.modules[alias]


imdb_pipeline = _load("input_pipeline", "imdb_input_pipeline")
imdb_config = _load("config", "imdb_config")  # for its checked number parser
