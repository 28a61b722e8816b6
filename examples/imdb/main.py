"""Trains a stacked-RNN sentiment classifier on IMDB reviews (tensorflow-datasets).

    python -m examples.imdb.main                      # the seed's Keras model: LSTM 5,5
    python -m examples.imdb.main --cell gru --out runs/gru
    python -m examples.imdb.main --preset strong --out runs/strong
    python -m examples.imdb.main --preset strong --out runs/strong   # again: continues

Run it from the repository root. Every run writes metrics.json, curves.png and orbax
checkpoints to `--out` (default: a new runs/imdb/<date-time>) and prints where; the same
`--out` continues a run from its latest checkpoint. The data comes from `--data-dir`, else
$TFDS_DATA_DIR, else ../shared/tensorflow_datasets beside the checkout, else
~/tensorflow_datasets, where a first run downloads and prepares it (`--no-download`:
an error instead). The training loop is train.py; the settings configs/; this file reads
the flags and turns the failures a user can act on into a message and an exit status.
"""

import argparse
import sys

from examples.common import checkpoint
from examples.common import cli
from examples.common import imdb_text
from examples.imdb import configs
from examples.imdb import parallel
from examples.imdb import train

PROG = "python -m examples.imdb.main"


def parser():
  number = cli.number
  p = argparse.ArgumentParser(
      prog=PROG,
      description="Train a stacked RNN sentiment classifier on IMDB (tensorflow-datasets).",
      argument_default=argparse.SUPPRESS)  # only the flags given appear: they override
  p.add_argument("--preset", choices=sorted(configs.PRESETS), help="seed (default) or strong")
  p.add_argument("--cell", choices=("rnn", "lstm", "gru"))
  p.add_argument("--hidden", type=cli.widths("5,5"), help="layer widths, bottom first, e.g. 5,5")
  p.add_argument("--embed", type=number(int, 1))
  p.add_argument("--vocab", type=number(int, 3), help="embedding rows, 2 reserved ids included")
  p.add_argument("--maxlen", type=number(int, 1), help="tokens kept per review (the last ones)")
  p.add_argument("--pooling", choices=("last", "meanmax"))
  p.add_argument("--time-loop", choices=("auto", "scan", "onednn"),
                 help="how each layer runs over time: auto (default: oneDNN's fused LSTM/GRU "
                      "on the CPU where it runs and is faster, else the scan), scan, onednn")
  p.add_argument("--bucket", type=number(int, 0), metavar="N",
                 help="batch reviews of similar length, cut to multiples of N steps; 0 = off")
  p.add_argument("--dropout", type=number(float, 0.0, high=1.0))
  p.add_argument("--residual", action="store_true",
                 help="residual connections: from layer 1 on, a layer as wide as its input "
                      "adds that input to its output (Wu et al. 2016)")
  p.add_argument("--epochs", type=number(int, 1))
  p.add_argument("--batch-size", type=number(int, 1))
  p.add_argument("--lr", type=number(float, 0.0, low_ok=False))
  p.add_argument("--schedule", choices=("constant", "cosine"))
  p.add_argument("--clip", type=number(float, 0.0), help="max global gradient norm, 0 = off")
  p.add_argument("--val-split", type=number(float, 0.0, low_ok=False, high=1.0))
  p.add_argument("--seed", type=number(int, 0))
  p.add_argument("--select", choices=("best", "last"),
                 help="test the params of the best validation epoch (default) or the last")
  p.add_argument("--eval-batch-size", type=number(int, 1))
  p.add_argument("--ckpt-every", type=number(int, 0), metavar="STEPS")
  p.add_argument("--limit-train", type=number(int, 0), metavar="N",
                 help="use only the first N training reviews (0 = all 25,000), for quick "
                      "runs and tests; the vocabulary and the validation split come from "
                      "these N")
  p.add_argument("--limit-test", type=number(int, 0), metavar="N",
                 help="evaluate on only the first N test reviews (0 = all 25,000), for "
                      "quick runs and tests")
  p.add_argument("--log-grad-norms", action="store_true")
  p.add_argument("--data-dir")
  p.add_argument("--no-download", dest="download", action="store_false",
                 help="never download: a data dir without a prepared imdb_reviews is an "
                      "error (by default the trainer downloads aclImdb_v1.tar.gz, 80 MB, "
                      "and prepares it there once, which needs TensorFlow)")
  p.add_argument("--download", action="store_true",
                 help="the default; accepted for older command lines")
  p.add_argument("--download-url", metavar="URL",
                 help="where to download aclImdb_v1.tar.gz from: a mirror's URL, or a local "
                      "file (default: tfds' Stanford URL, whose checksum tfds checks; a "
                      "mirror's copy is not checked)")
  p.add_argument("--out", metavar="DIR",
                 help="write metrics.json, curves.png and checkpoints (DIR/checkpoints) "
                      "here (default: a new runs/imdb/<date-time>). If DIR holds a "
                      "checkpoint, training continues from it (the same command line "
                      "continues a run or starts it); to start over, delete "
                      "DIR/checkpoints or choose another DIR")
  p.add_argument("--resume", action="store_true",
                 help="require a checkpoint in --out to continue from: an error if there "
                      "is none, rather than a fresh start (a checkpoint there is continued "
                      "with or without this flag)")
  p.add_argument("--mesh", type=parallel.mesh_flag, metavar="data=N",
                 help="split every batch over N devices (data parallel; N virtual devices "
                      "on a CPU); --batch-size and --eval-batch-size stay global. "
                      "data=auto: over every device, on a CPU one per core (as many as "
                      "divide both batch sizes)")
  p.add_argument("--coordinator", metavar="HOST:PORT",
                 help="join a multi-process run through jax.distributed: process 0's "
                      "address, or 'auto' to let JAX read the cluster's environment")
  p.add_argument("--num-processes", type=number(int, 1))
  p.add_argument("--process-id", type=number(int, 0))
  p.add_argument("--compile-cache", metavar="DIR",
                 help="keep compiled steps in DIR, so that a relaunch or a repeated command "
                      "loads them instead of compiling (default auto: "
                      "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/deeprnn_jax/xla; off: "
                      "none)")
  p.add_argument("--data-cache", metavar="DIR",
                 help="keep the encoded reviews in DIR, so that a repeated command skips "
                      "reading and tokenising them (default auto: ~/.cache/deeprnn_jax/imdb; "
                      "off: none)")
  p.add_argument("--export", metavar="PATH",
                 help="after training, write the tested params' inference function "
                      "(tokens, lengths -> probabilities; any batch size and length) as a "
                      "serialized jax.export.Exported to PATH, and the vocabulary to "
                      "PATH.vocab.json")
  return p


def parse(argv=None):
  """Returns (explicit, config): the settings given on the command line (a preset's
  expanded), and the full configuration for a fresh run (defaults < preset < flags)."""
  p = parser()
  args = vars(p.parse_args(argv))
  name = args.pop("preset", None)
  explicit = {**(configs.preset(name) if name else {}), **args}
  if explicit.get("resume") and not explicit.get("out"):
    p.error("--resume needs --out DIR, the directory holding the checkpoint")
  if explicit.get("coordinator") not in (None, "auto") and "num_processes" not in explicit:
    p.error("--coordinator HOST:PORT needs --num-processes and --process-id")
  if explicit.get("coordinator") and not explicit.get("out"):
    p.error("--coordinator needs --out DIR, one directory for all the processes")
  if explicit.get("process_id", 0) >= explicit.get("num_processes", 1):
    p.error(f"--process-id: expected less than --num-processes "
            f"({explicit.get('num_processes', 1)}), got {explicit['process_id']}")
  cfg = {**configs.DEFAULTS, **explicit, "preset": name or "seed"}
  cfg["out"] = cfg["out"] or cli.default_out("imdb")
  return explicit, cfg


def run_main(argv=None):
  """Trains as the command line says; the failures a user can act on become a message
  and an exit status."""
  explicit, cfg = parse(argv)
  out = cfg["out"]
  try:
    train.train_and_evaluate(cfg, explicit, sys.argv[1:] if argv is None else argv)
    return 0
  except (imdb_text.DataError, checkpoint.CheckpointError, parallel.ParallelError) as e:
    print(f"error: {e}", file=sys.stderr)
    return train.EXIT_ERROR
  except train.NonFinite as e:
    print(f"error: {e}. Training stopped; {train.last_good(out)}. Continue with a smaller "
          f"learning rate: rerun the same command with --lr <smaller>", file=sys.stderr)
    return train.EXIT_NONFINITE
  except train.Interrupted as e:
    print(f"interrupted by {e}; checkpoint saved in {checkpoint.path(out)}; rerun the same "
          f"command (with --out {out}) to continue", file=sys.stderr)
    return train.EXIT_INTERRUPTED
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return train.EXIT_INTERRUPTED


if __name__ == "__main__":
  sys.exit(run_main())
