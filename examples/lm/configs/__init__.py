"""The language model's configuration: configs/default.py."""

from examples.lm.configs import default

DEFAULTS = default.get_config()

# Settings a checkpoint is tied to: resuming with different values is refused.
FROZEN = ("level", "cell", "residual", "hidden", "embed", "vocab", "bptt", "batch_size", "optimizer", "dropout", "tie",
          "init_range", "limit_train_tokens", "vocab_text", "chunks_per_call", "seed")
HELD_OUT_REVIEWS = 25000  # the labelled test split
