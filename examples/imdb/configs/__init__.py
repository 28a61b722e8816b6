"""The trainer's configurations: `--preset seed` (default.py) and `--preset strong`."""

from examples.imdb.configs import default
from examples.imdb.configs import strong

PRESETS = {"seed": default, "strong": strong}
DEFAULTS = default.get_config()

# Where and how this launch runs: taken from the command line, never from a checkpoint
# (a run continues on another number of devices or processes).
MACHINE = ("mesh", "coordinator", "num_processes", "process_id", "compile_cache",
           "data_cache")

# Settings a checkpoint is tied to: resuming with different values is refused.
FROZEN = ("cell", "hidden", "embed", "vocab", "maxlen", "pooling", "dropout", "residual",
          "batch_size", "bucket", "val_split", "seed", "limit_train")


def preset(name):
  """The settings `--preset name` changes from the defaults."""
  config = PRESETS[name].get_config()
  return {k: v for k, v in config.items() if v != DEFAULTS[k]}
