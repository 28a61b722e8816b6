"""Trains a word- or character-level stacked-LSTM (or GRU) language model on IMDB text.

    python -m examples.lm.main --limit-train-tokens 2000000 --out runs/lm
    python -m examples.lm.main --limit-train-tokens 2000000 --out runs/lm   # again: continues
    python -m examples.lm.main --layers 3 --hidden 256 --embed 256 --tie --out runs/lm3
    python -m examples.lm.main --out runs/lm --epochs 4 --sample "this movie was"
    python -m examples.lm.main --level char --vocab 200 --embed 32 --hidden 256 --bptt 100 \
        --cell gru --layers 4 --residual --limit-train-tokens 2000000 --val-every 100

Run it from the repository root. The classic setup (Zaremba et al. 2014; PyTorch's
word_language_model): the training text as `--batch-size` continuous streams, read in
chunks of `--bptt` steps with the state carried from chunk to chunk and its gradient cut
between them (`drnn.tbptt_train`), dropout on the word vectors, between layers and on the
outputs, validation perplexity every epoch and test perplexity at the end. Every run
writes metrics.json, curves.png and an orbax checkpoint after each epoch to `--out`
(default: a new runs/lm/<date-time>); the same `--out` continues (a larger `--epochs`
trains on). The loop is train.py; this file reads the flags (shared with
studies/lm_torch.py, the same model in PyTorch) and reports failures.
"""

import argparse
import sys

from examples.common import checkpoint
from examples.common import cli
from examples.common import imdb_text
from examples.lm import configs
from examples.lm import input_pipeline
from examples.lm import train

PROG = "python -m examples.lm.main"


def _model_flags(p):
  p.add_argument("--level", choices=("word", "char"),
                 help="tokens are words (default) or characters: a character-level model, "
                      "scored in bits per character (give --vocab about 200)")
  p.add_argument("--cell", choices=("lstm", "gru"), help="the recurrent cell (lstm)")
  p.add_argument("--time-loop", choices=("auto", "scan", "onednn"),
                 help="how each layer runs over time: auto (default: oneDNN's fused LSTM/GRU "
                      "on the CPU where it runs and is faster, else the scan), scan, onednn")
  p.add_argument("--residual", action="store_true",
                 help="skip connections around every layer above the first (equal widths)")
  p.add_argument("--layers", type=cli.number(int, 1),
                 help="LSTM layers, each as wide as the one --hidden width (default 2)")
  p.add_argument("--hidden", type=cli.widths("200,200"),
                 help="LSTM widths, bottom first (200,200); one width with --layers L")
  p.add_argument("--embed", type=cli.number(int, 1), help="word-vector width (200)")
  p.add_argument("--vocab", type=cli.number(int, 3), help="ids, <eos> and <unk> included (10000)")
  p.add_argument("--dropout", type=cli.number(float, 0.0, high=1.0),
                 help="on word vectors, between layers and on the top outputs (0.2)")
  p.add_argument("--tie", action="store_true",
                 help="tie the output layer to the embedding (the top width must be --embed)")
  p.add_argument("--init-range", type=cli.number(float, 0.0, low_ok=False),
                 help="weights start uniform in [-R, R] (0.1)")


def _training_flags(p):
  p.add_argument("--bptt", type=cli.number(int, 1), help="steps per truncated-BPTT chunk (35)")
  p.add_argument("--batch-size", type=cli.number(int, 1), help="continuous streams (20)")
  p.add_argument("--epochs", type=cli.number(int, 1), help="passes over the training text (3)")
  p.add_argument("--optimizer", choices=("adam", "sgd"), help="adam (default) or plain sgd")
  p.add_argument("--lr", type=cli.number(float, 0.0, low_ok=False), help="learning rate (2e-3)")
  p.add_argument("--schedule", choices=("constant", "cosine"),
                 help="cosine (default): decay --lr to 0 over the run's --epochs (a "
                      "relaunch with a larger --epochs stretches the rest of the decay)")
  p.add_argument("--clip", type=cli.number(float, 0.0),
                 help="max global gradient norm (0.25), 0 = off")
  p.add_argument("--seed", type=cli.number(int, 0))
  p.add_argument("--chunks-per-call", type=cli.number(int, 1), metavar="N",
                 help="optimizer steps per jitted call (25): progress bars and Ctrl-C "
                      "checkpoints move in these steps")


def _data_flags(p):
  p.add_argument("--limit-train-tokens", type=cli.number(int, 0), metavar="N",
                 help="train on the first N tokens of the 11.8 million of the unlabelled "
                      "reviews (0 = all): sizes a run to a time budget")
  p.add_argument("--vocab-text", choices=("train", "corpus"),
                 help="count the vocabulary over the text trained on (train, default) or "
                      "over all unlabelled reviews (corpus: runs with different "
                      "--limit-train-tokens then share a vocabulary, and their perplexities "
                      "compare; reading it all takes about 10 s)")
  p.add_argument("--val-reviews", type=cli.number(int, 1),
                 help="validation: the first N reviews of the labelled test split (5000)")
  p.add_argument("--test-reviews", type=cli.number(int, 1),
                 help="test: the next N reviews of the labelled test split (5000)")
  p.add_argument("--eval-batch-size", type=cli.number(int, 1), help="streams when evaluating (10)")
  p.add_argument("--val-every", type=cli.number(int, 0), metavar="N",
                 help="also validate every N optimizer steps, for a learning curve "
                      "(validation loss against tokens seen) in metrics.json's 'curve' "
                      "(0 = after each epoch only)")
  p.add_argument("--data-dir", help="tfds data dir (else $TFDS_DATA_DIR, else "
                                    "~/tensorflow_datasets) holding a prepared imdb_reviews")


def _output_flags(p):
  p.add_argument("--out", metavar="DIR",
                 help="write metrics.json, curves.png and checkpoints (DIR/checkpoints) "
                      "here (default: a new runs/lm/<date-time>). If DIR holds a checkpoint, "
                      "training continues from it (the "
                      "same command line continues a run or starts it; a larger --epochs "
                      "trains on); to start over, delete DIR/checkpoints or choose another DIR")
  p.add_argument("--resume", action="store_true",
                 help="require a checkpoint in --out to continue from")
  p.add_argument("--compile-cache", metavar="DIR",
                 help="keep compiled steps in DIR for relaunches (default auto: "
                      "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/deeprnn_jax/xla; off: none)")
  p.add_argument("--sample", metavar="PROMPT",
                 help='after training, continue PROMPT (e.g. "this movie was") with sampled '
                      'words, printed and saved in metrics.json; "|" marks a review\'s end')
  p.add_argument("--temperature", type=cli.number(float, 0.0),
                 help="sampling temperature (1.0); 0 = always the most likely word")
  p.add_argument("--sample-words", type=cli.number(int, 1), help="words to sample (50)")


def parser(description="Train a word-level stacked-LSTM language model on IMDB reviews.",
           prog=PROG):
  p = argparse.ArgumentParser(prog=prog, description=description,
                              argument_default=argparse.SUPPRESS)  # given flags override
  for add in (_model_flags, _training_flags, _data_flags, _output_flags):
    add(p)
  return p


def _resolve_layers(p, args):
  """--layers L with one --hidden width (or the default's) -> L equal widths."""
  layers = args.pop("layers", None)
  if layers is None:
    return
  widths = args.get("hidden", configs.DEFAULTS["hidden"][:1])
  if len(widths) == 1:
    args["hidden"] = widths * layers
  elif len(widths) != layers:
    p.error(f"--layers {layers} with --hidden {','.join(map(str, widths))}: expected one "
            f"width or {layers} widths")
  else:
    args["hidden"] = widths


def parse(argv=None, description=None, prog=PROG, default_out=True):
  """Returns (explicit, config): the settings given on the command line, and the full
  configuration for a fresh run (defaults < flags); `default_out`: a new
  runs/lm/<date-time> when --out is not given."""
  p = parser(*([description] if description else []), prog=prog)
  args = vars(p.parse_args(argv))
  _resolve_layers(p, args)
  cfg = {**configs.DEFAULTS, **args}
  if cfg["resume"] and not cfg["out"]:
    p.error("--resume needs --out DIR, the directory holding the checkpoint")
  if cfg["val_reviews"] + cfg["test_reviews"] > configs.HELD_OUT_REVIEWS:
    p.error(f"--val-reviews {cfg['val_reviews']} + --test-reviews {cfg['test_reviews']}: "
            f"expected at most {configs.HELD_OUT_REVIEWS} together (the labelled test split)")
  if cfg["tie"] and cfg["hidden"][-1] != cfg["embed"]:
    p.error(f"--tie: the output layer is the embedding [vocab, embed], so the top LSTM layer "
            f"must be --embed wide; expected a last --hidden width of {cfg['embed']}, got "
            f"--hidden {','.join(map(str, cfg['hidden']))}")
  if cfg["residual"] and len(set(cfg["hidden"][1:])) > 1:
    p.error(f"--residual: each layer above the first adds its input to its output, so those "
            f"layers must be equally wide; got --hidden {','.join(map(str, cfg['hidden']))}")
  if default_out:
    cfg["out"] = cfg["out"] or cli.default_out("lm")
  return args, cfg


def run_main(argv=None):
  """Trains as the command line says; the failures a user can act on become a message
  and an exit status."""
  explicit, cfg = parse(argv)
  out = cfg["out"]
  try:
    train.train_and_evaluate(cfg, explicit, sys.argv[1:] if argv is None else argv)
    return 0
  except (imdb_text.DataError, input_pipeline.TextTooShort, checkpoint.CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr)
    return train.EXIT_ERROR
  except train.NonFinite as e:
    print(f"error: {e}. Training stopped; the last checkpoint in {out} is kept. Continue "
          f"with a smaller learning rate: rerun the same command with --lr <smaller>",
          file=sys.stderr)
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
