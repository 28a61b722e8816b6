"""Trainer settings: plain defaults (the seed's Keras model), two presets, the flags."""

import argparse
import math

DEFAULTS = dict(
    cell="lstm",        # Keras LSTM layers
    hidden=(5, 5),      # LSTM(5, return_sequences=True) -> LSTM(5)
    embed=32,           # Embedding(10000, 32)
    vocab=10000,        # imdb.load_data(num_words=10000); ids 0 (padding) and 1 (unknown) included
    maxlen=100,         # pad_sequences(maxlen=100); the LAST 100 tokens are kept, as Keras does
    pooling="last",     # the top layer's state at the last token (the last LSTM's output)
    bucket=0,           # cut batches of similar-length reviews to multiples of N steps; 0 = off
    dropout=0.0,        # the seed has none
    residual=False,     # add each layer's input to its output (layers 1+, equal widths)
    epochs=5,           # model.fit(epochs=5)
    batch_size=32,      # Keras' default batch size
    lr=1e-3,            # Adam's Keras default
    schedule="constant",  # or "cosine": decay --lr to 0 over the --epochs of the run
    clip=0.0,           # max global gradient norm; 0 = no clipping, as the seed's Adam
    val_split=0.2,      # validation_split=0.2, held out at random (seeded) here
    seed=0,             # parameters, split, data order and dropout all follow from it
    select="best",      # test the epoch with the best val accuracy (Keras' restore_best_weights)
    eval_batch_size=500,  # rows per evaluation step (no gradients, so larger is fine)
    ckpt_every=0,       # also checkpoint every N steps inside an epoch; 0 = at epoch ends only
    limit_train=0,      # use only the first N training reviews (0 = all 25,000)
    limit_test=0,       # evaluate on the first N test reviews (0 = all 25,000)
    log_grad_norms=False,  # log per-layer gradient norms each epoch
    data_dir=None,      # tfds data dir; else $TFDS_DATA_DIR, else ~/tensorflow_datasets
    download=True,      # download and prepare imdb_reviews (once) if the data dir holds none
    download_url=None,  # where to get aclImdb_v1.tar.gz; None = tfds' own URL (Stanford's)
    out=None,           # where metrics.json, curves.png and checkpoints/ go
    resume=False,       # require a checkpoint in --out (one there is continued anyway)
    export=None,        # after training, write the inference function (jax.export) here
    mesh=0,             # split every batch over N devices (--mesh data=N); 0 = one device;
                        # "auto": every device (on a CPU, one virtual device per core)
    coordinator=None,   # HOST:PORT of process 0 of a multi-process run, or "auto"
    num_processes=1,    # processes of a multi-process run
    process_id=0,       # this process's index in it
    compile_cache="auto",  # persistent XLA cache dir; auto = $JAX_COMPILATION_CACHE_DIR or ~/.cache
    data_cache="auto",  # encoded-reviews cache dir; auto = ~/.cache/deeprnn_jax/imdb; off
)

# Where and how this launch runs: taken from the command line, never from a checkpoint
# (a run continues on another number of devices or processes).
MACHINE = ("mesh", "coordinator", "num_processes", "process_id", "compile_cache",
           "data_cache")

PRESETS = {
    "seed": {},
    # one GRU layer of 64 over the last 500 tokens, masked mean+max pooling of its
    # outputs, batches of similar-length reviews (bucket) so that padding costs little on
    # a CPU, each batch split over one virtual device per core (benchmarks/NOTES.md v16:
    # a second layer and batches of 32 bought 0.003 of accuracy for 2.3x the time; v17:
    # maxlen 500 over 400 raised validation accuracy for both seeds tried, for ~3 s)
    "strong": dict(cell="gru", hidden=(64,), embed=64, vocab=20000, maxlen=500,
                   pooling="meanmax", bucket=100, dropout=0.4, epochs=2, batch_size=128,
                   lr=5e-3, schedule="cosine", clip=1.0, val_split=0.1, mesh="auto"),
}

# Settings a checkpoint is tied to: resuming with different values is refused.
FROZEN = ("cell", "hidden", "embed", "vocab", "maxlen", "pooling", "dropout", "residual",
          "batch_size", "bucket", "val_split", "seed", "limit_train")


def _hidden(text):
  try:
    sizes = tuple(int(h) for h in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated widths like 5,5, got {text!r}")
  if not sizes or min(sizes) <= 0:
    raise argparse.ArgumentTypeError(f"expected positive widths like 5,5, got {text!r}")
  return sizes


def _mesh(text):
  name, _, size = text.partition("=")
  if name == "data" and size == "auto":
    return "auto"
  if name != "data" or not size.isdigit() or int(size) < 1:
    raise argparse.ArgumentTypeError(f"expected data=N with N a positive number of "
                                     f"devices, or data=auto, got {text!r}")
  return int(size)


def _number(kind, low, low_ok=True, high=None):
  def parse(text):
    try:
      value = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}")
    if not math.isfinite(value):  # nan compares False with every bound: reject it here
      raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value < low or (value == low and not low_ok) or (high is not None and value >= high):
      bound = f"{'>=' if low_ok else '>'} {low}" + (f" and < {high}" if high else "")
      raise argparse.ArgumentTypeError(f"expected a value {bound}, got {text!r}")
    return value

  return parse


def parser():
  p = argparse.ArgumentParser(
      description="Train a stacked RNN sentiment classifier on IMDB (tensorflow-datasets).",
      argument_default=argparse.SUPPRESS)  # only the flags given appear: they override
  p.add_argument("--preset", choices=sorted(PRESETS), help="seed (default) or strong")
  p.add_argument("--cell", choices=("rnn", "lstm", "gru"))
  p.add_argument("--hidden", type=_hidden, help="layer widths, bottom first, e.g. 5,5")
  p.add_argument("--embed", type=_number(int, 1))
  p.add_argument("--vocab", type=_number(int, 3), help="embedding rows, 2 reserved ids included")
  p.add_argument("--maxlen", type=_number(int, 1), help="tokens kept per review (the last ones)")
  p.add_argument("--pooling", choices=("last", "meanmax"))
  p.add_argument("--bucket", type=_number(int, 0), metavar="N",
                 help="batch reviews of similar length, cut to multiples of N steps; 0 = off")
  p.add_argument("--dropout", type=_number(float, 0.0, high=1.0))
  p.add_argument("--residual", action="store_true",
                 help="residual connections: from layer 1 on, a layer as wide as its input "
                      "adds that input to its output (Wu et al. 2016)")
  p.add_argument("--epochs", type=_number(int, 1))
  p.add_argument("--batch-size", type=_number(int, 1))
  p.add_argument("--lr", type=_number(float, 0.0, low_ok=False))
  p.add_argument("--schedule", choices=("constant", "cosine"))
  p.add_argument("--clip", type=_number(float, 0.0), help="max global gradient norm, 0 = off")
  p.add_argument("--val-split", type=_number(float, 0.0, low_ok=False, high=1.0))
  p.add_argument("--seed", type=_number(int, 0))
  p.add_argument("--select", choices=("best", "last"),
                 help="test the params of the best validation epoch (default) or the last")
  p.add_argument("--eval-batch-size", type=_number(int, 1))
  p.add_argument("--ckpt-every", type=_number(int, 0), metavar="STEPS")
  p.add_argument("--limit-train", type=_number(int, 0), metavar="N",
                 help="use only the first N training reviews (0 = all 25,000), for quick "
                      "runs and tests; the vocabulary and the validation split come from "
                      "these N")
  p.add_argument("--limit-test", type=_number(int, 0), metavar="N",
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
                      "here. If DIR holds a checkpoint, training continues from it (the "
                      "same command line continues a run or starts it); to start over, "
                      "delete DIR/checkpoints or choose another DIR")
  p.add_argument("--resume", action="store_true",
                 help="require a checkpoint in --out to continue from: an error if there "
                      "is none, rather than a fresh start (a checkpoint there is continued "
                      "with or without this flag)")
  p.add_argument("--mesh", type=_mesh, metavar="data=N",
                 help="split every batch over N devices (data parallel; N virtual devices "
                      "on a CPU); --batch-size and --eval-batch-size stay global. "
                      "data=auto: over every device, on a CPU one per core (as many as "
                      "divide both batch sizes)")
  p.add_argument("--coordinator", metavar="HOST:PORT",
                 help="join a multi-process run through jax.distributed: process 0's "
                      "address, or 'auto' to let JAX read the cluster's environment")
  p.add_argument("--num-processes", type=_number(int, 1))
  p.add_argument("--process-id", type=_number(int, 0))
  p.add_argument("--compile-cache", metavar="DIR",
                 help="keep compiled steps in DIR, so that a relaunch or a repeated command "
                      "loads them instead of compiling (default auto: "
                      "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/deeprnn_jax/xla; off: "
                      "none); see examples/imdb/compile_cache.py")
  p.add_argument("--data-cache", metavar="DIR",
                 help="keep the encoded reviews in DIR, so that a repeated command skips "
                      "reading and tokenising them (default auto: ~/.cache/deeprnn_jax/imdb; "
                      "off: none); see examples/imdb/data_cache.py")
  p.add_argument("--export", metavar="PATH",
                 help="after training, write the tested params' inference function "
                      "(tokens, lengths -> probabilities; any batch size and length) as a "
                      "serialized jax.export.Exported to PATH, and the vocabulary to "
                      "PATH.vocab.json; see examples/imdb/export.py")
  return p


def parse(argv=None):
  """Returns (explicit, config): the settings given on the command line (a preset's
  expanded), and the full configuration for a fresh run (defaults < preset < flags)."""
  p = parser()
  args = vars(p.parse_args(argv))
  preset = args.pop("preset", None)
  explicit = {**PRESETS.get(preset, {}), **args}
  if explicit.get("resume") and not explicit.get("out"):
    p.error("--resume needs --out DIR, the directory holding the checkpoint")
  if explicit.get("coordinator") not in (None, "auto") and "num_processes" not in explicit:
    p.error("--coordinator HOST:PORT needs --num-processes and --process-id")
  if explicit.get("process_id", 0) >= explicit.get("num_processes", 1):
    p.error(f"--process-id: expected less than --num-processes "
            f"({explicit.get('num_processes', 1)}), got {explicit['process_id']}")
  if explicit.get("ckpt_every") and not explicit.get("out"):
    p.error("--ckpt-every needs --out DIR, where checkpoints are written")
  return explicit, {**DEFAULTS, **explicit, "preset": preset or "seed"}
