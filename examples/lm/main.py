"""Trainer settings: plain defaults (PyTorch word_language_model's small LSTM), the flags.

The train.py of this directory and torch_peer.py read the same flags, so that one
command line describes one model and one data setup for both implementations.
"""

import argparse

import reuse

DEFAULTS = dict(
    hidden=(200, 200),  # LSTM widths, bottom first (word_language_model: --nhid 200 --nlayers 2)
    embed=200,          # word vectors (--emsize 200)
    vocab=10000,        # ids, <eos> and <unk> included (PTB's size)
    bptt=35,            # steps per truncated-BPTT chunk (--bptt 35)
    batch_size=20,      # continuous streams (--batch_size 20)
    epochs=3,           # passes over the training text
    optimizer="adam",   # or "sgd" (Zaremba: SGD, lr 1; word_language_model: lr 20)
    lr=2e-3,            # Adam's step size
    schedule="cosine",  # decay --lr to 0 over the --epochs of the run, or "constant"
    clip=0.25,          # max global gradient norm (--clip 0.25); 0 = off
    dropout=0.2,        # on word vectors, between layers, on the top outputs (--dropout 0.2)
    tie=False,          # output layer = embedding matrix (needs the top width == --embed)
    init_range=0.1,     # every weight U(-0.1, 0.1) (Zaremba's small model; word_language_model)
    limit_train_tokens=0,  # train on the first N tokens of the 11.8M (0 = all)
    vocab_text="train",  # count the vocabulary over the text trained on, or the whole "corpus"
    val_reviews=5000,   # the first 5,000 reviews of the labelled test split: validation
    test_reviews=5000,  # the next 5,000: test
    eval_batch_size=10,  # streams when evaluating (word_language_model: 10)
    chunks_per_call=25,  # bptt chunks (optimizer steps) per jitted call: the progress grain
    seed=0,             # parameters and dropout follow from it (the text is never shuffled)
    data_dir=None,      # tfds data dir; else $TFDS_DATA_DIR, else ~/tensorflow_datasets
    out=None,           # where metrics.json, curves.png and checkpoints/ go
    resume=False,       # require a checkpoint in --out (one there is continued anyway)
    sample=None,        # a prompt to continue after training, e.g. "this movie was"
    temperature=1.0,    # of the sampling softmax; 0 = always the most likely word
    sample_words=50,    # words sampled after the prompt
    compile_cache="auto",  # persistent XLA cache dir; auto = $JAX_COMPILATION_CACHE_DIR or ~/.cache
)

# Settings a checkpoint is tied to: resuming with different values is refused.
FROZEN = ("hidden", "embed", "vocab", "bptt", "batch_size", "optimizer", "dropout", "tie",
          "init_range", "limit_train_tokens", "vocab_text", "chunks_per_call", "seed")
HELD_OUT_REVIEWS = 25000  # the labelled test split


def _widths(text):
  try:
    sizes = tuple(int(h) for h in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated widths like 200,200, "
                                     f"got {text!r}")
  if not sizes or min(sizes) <= 0:
    raise argparse.ArgumentTypeError(f"expected positive widths like 200,200, got {text!r}")
  return sizes


# the IMDB trainer's parser: a finite number within bounds, or a message saying which
_number = reuse.imdb_config._number


def _model_flags(p):
  p.add_argument("--layers", type=_number(int, 1),
                 help="LSTM layers, each as wide as the one --hidden width (default 2)")
  p.add_argument("--hidden", type=_widths,
                 help="LSTM widths, bottom first (200,200); one width with --layers L")
  p.add_argument("--embed", type=_number(int, 1), help="word-vector width (200)")
  p.add_argument("--vocab", type=_number(int, 3), help="ids, <eos> and <unk> included (10000)")
  p.add_argument("--dropout", type=_number(float, 0.0, high=1.0),
                 help="on word vectors, between layers and on the top outputs (0.2)")
  p.add_argument("--tie", action="store_true",
                 help="tie the output layer to the embedding (the top width must be --embed)")
  p.add_argument("--init-range", type=_number(float, 0.0, low_ok=False),
                 help="weights start uniform in [-R, R] (0.1)")


def _training_flags(p):
  p.add_argument("--bptt", type=_number(int, 1), help="steps per truncated-BPTT chunk (35)")
  p.add_argument("--batch-size", type=_number(int, 1), help="continuous streams (20)")
  p.add_argument("--epochs", type=_number(int, 1), help="passes over the training text (3)")
  p.add_argument("--optimizer", choices=("adam", "sgd"), help="adam (default) or plain sgd")
  p.add_argument("--lr", type=_number(float, 0.0, low_ok=False), help="learning rate (2e-3)")
  p.add_argument("--schedule", choices=("constant", "cosine"),
                 help="cosine (default): decay --lr to 0 over the run's --epochs (a "
                      "relaunch with a larger --epochs stretches the rest of the decay)")
  p.add_argument("--clip", type=_number(float, 0.0),
                 help="max global gradient norm (0.25), 0 = off")
  p.add_argument("--seed", type=_number(int, 0))
  p.add_argument("--chunks-per-call", type=_number(int, 1), metavar="N",
                 help="optimizer steps per jitted call (25): progress bars and Ctrl-C "
                      "checkpoints move in these steps")


def _data_flags(p):
  p.add_argument("--limit-train-tokens", type=_number(int, 0), metavar="N",
                 help="train on the first N tokens of the 11.8 million of the unlabelled "
                      "reviews (0 = all): sizes a run to a time budget")
  p.add_argument("--vocab-text", choices=("train", "corpus"),
                 help="count the vocabulary over the text trained on (train, default) or "
                      "over all unlabelled reviews (corpus: runs with different "
                      "--limit-train-tokens then share a vocabulary, and their perplexities "
                      "compare; reading it all takes about 10 s)")
  p.add_argument("--val-reviews", type=_number(int, 1),
                 help="validation: the first N reviews of the labelled test split (5000)")
  p.add_argument("--test-reviews", type=_number(int, 1),
                 help="test: the next N reviews of the labelled test split (5000)")
  p.add_argument("--eval-batch-size", type=_number(int, 1), help="streams when evaluating (10)")
  p.add_argument("--data-dir", help="tfds data dir (else $TFDS_DATA_DIR, else "
                                    "~/tensorflow_datasets) holding a prepared imdb_reviews")


def _output_flags(p):
  p.add_argument("--out", metavar="DIR",
                 help="write metrics.json, curves.png and checkpoints (DIR/checkpoints) "
                      "here. If DIR holds a checkpoint, training continues from it (the "
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
  p.add_argument("--temperature", type=_number(float, 0.0),
                 help="sampling temperature (1.0); 0 = always the most likely word")
  p.add_argument("--sample-words", type=_number(int, 1), help="words to sample (50)")


def parser(description="Train a word-level stacked-LSTM language model on IMDB reviews."):
  p = argparse.ArgumentParser(description=description,
                              argument_default=argparse.SUPPRESS)  # given flags override
  for add in (_model_flags, _training_flags, _data_flags, _output_flags):
    add(p)
  return p


def _resolve_layers(p, args):
  """--layers L with one --hidden width (or the default's) -> L equal widths."""
  layers = args.pop("layers", None)
  if layers is None:
    return
  widths = args.get("hidden", DEFAULTS["hidden"][:1])
  if len(widths) == 1:
    args["hidden"] = widths * layers
  elif len(widths) != layers:
    p.error(f"--layers {layers} with --hidden {','.join(map(str, widths))}: expected one "
            f"width or {layers} widths")
  else:
    args["hidden"] = widths


def parse(argv=None, description=None):
  """Returns (explicit, config): the settings given on the command line, and the full
  configuration for a fresh run (defaults < flags)."""
  p = parser(*([description] if description else []))
  args = vars(p.parse_args(argv))
  _resolve_layers(p, args)
  cfg = {**DEFAULTS, **args}
  if cfg["resume"] and not cfg["out"]:
    p.error("--resume needs --out DIR, the directory holding the checkpoint")
  if cfg["val_reviews"] + cfg["test_reviews"] > HELD_OUT_REVIEWS:
    p.error(f"--val-reviews {cfg['val_reviews']} + --test-reviews {cfg['test_reviews']}: "
            f"expected at most {HELD_OUT_REVIEWS} together (the labelled test split)")
  if cfg["tie"] and cfg["hidden"][-1] != cfg["embed"]:
    p.error(f"--tie: the output layer is the embedding [vocab, embed], so the top LSTM layer "
            f"must be --embed wide; expected a last --hidden width of {cfg['embed']}, got "
            f"--hidden {','.join(map(str, cfg['hidden']))}")
  return args, cfg
