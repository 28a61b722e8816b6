"""The same language model and data in PyTorch, for comparing against examples/lm.

    python -m studies.lm_torch --limit-train-tokens 2000000 --out runs/lm_torch

It reads examples/lm's flags (main.py) and the same batches from the same input pipeline:
nn.Embedding -> nn.LSTM(num_layers=L, dropout=...) -> nn.Linear, dropout on the word
vectors and the top outputs, every weight U(-init_range, init_range), biases zero but the
forget gate's (1, as our LSTM's), the same optimizer (Adam or SGD, cosine-decayed or
constant), global-norm clipping and truncated BPTT with the state carried and detached
between chunks (PyTorch's word_language_model). It writes metrics.json and curves.png in
examples/lm's format ("impl": "torch"), with tokens/s measured the same way: training time
only, without validation. No checkpoints: a run is one process (--resume is refused);
--sample is not implemented here.
"""

import math
import os
import sys
import time

import torch
from torch import nn

from examples.common import imdb_text
from examples.common import provenance
from examples.lm import input_pipeline
from examples.lm import main as lm_main
from examples.lm import report


class TorchLM(nn.Module):
  """Embedding -> LSTM or GRU stack -> linear, as model.language_model (equal widths, no
  residual connections)."""

  def __init__(self, vocab, embed, hidden, layers, dropout=0.0, tie=False, init_range=0.1,
               cell="lstm"):
    super().__init__()
    self.drop = nn.Dropout(dropout)
    self.encoder = nn.Embedding(vocab, embed)
    kind = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
    self.rnn = kind(embed, hidden, layers, dropout=dropout if layers > 1 else 0.0,
                    batch_first=True)
    self.decoder = nn.Linear(hidden, vocab)
    with torch.no_grad():
      for name, p in self.named_parameters():
        if "bias" in name:
          p.zero_()
        else:
          p.uniform_(-init_range, init_range)
      for k in range(layers if cell == "lstm" else 0):  # rows [i | f | g | o]: f open
        getattr(self.rnn, f"bias_ih_l{k}")[hidden:2 * hidden] = 1.0
    if tie:
      self.decoder.weight = self.encoder.weight

  def forward(self, tokens, state=None):  # tokens [B, T] -> logits [B, T, V]
    ys, state = self.rnn(self.drop(self.encoder(tokens)), state)
    return self.decoder(self.drop(ys)), state


def build(cfg):
  widths = set(cfg["hidden"])
  if len(widths) != 1:
    raise ValueError(f"--hidden: nn.LSTM(num_layers=L) has one width for all layers; "
                     f"expected equal widths, got {','.join(map(str, cfg['hidden']))}")
  if cfg["residual"]:
    raise ValueError("--residual: nn.LSTM and nn.GRU have no residual connections; run the "
                     "peer without --residual")
  return TorchLM(cfg["vocab"], cfg["embed"], cfg["hidden"][0], len(cfg["hidden"]),
                 cfg["dropout"], cfg["tie"], cfg["init_range"], cfg["cell"])


def make_optimizer(cfg, net, total_steps):
  """Adam or SGD, with optax.cosine_decay_schedule's factor 0.5 (1 + cos(pi t / T))."""
  kind = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg["optimizer"]]
  opt = kind(net.parameters(), lr=cfg["lr"])
  factor = (lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps))) \
      if cfg["schedule"] == "cosine" else (lambda t: 1.0)
  return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def detach(state):
  """The carry without its gradient: (h, c) for an LSTM, h for a GRU."""
  return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def train_epoch(net, opt, sched, data, cfg):
  """One pass over data [B, N] in --bptt chunks: (nll sum, tokens, seconds)."""
  net.train()
  data = torch.from_numpy(data).long()
  state, nll, tokens, seconds = None, 0.0, 0, 0.0
  for start in range(0, data.shape[1] - 1, cfg["bptt"]):
    t0 = time.perf_counter()
    stop = min(start + cfg["bptt"], data.shape[1] - 1)
    logits, state = net(data[:, start:stop], state)
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                       data[:, start + 1:stop + 1].reshape(-1))
    opt.zero_grad()
    loss.backward()
    if cfg["clip"]:
      nn.utils.clip_grad_norm_(net.parameters(), cfg["clip"])
    opt.step()
    sched.step()
    state = detach(state)  # the state goes on; its gradient stops here
    value = loss.item()
    seconds += time.perf_counter() - t0
    if not math.isfinite(value):
      raise FloatingPointError(f"non-finite training loss at chunk {start // cfg['bptt']}")
    n = data.shape[0] * (stop - start)
    nll, tokens = nll + value * n, tokens + n
  return nll, tokens, seconds


@torch.no_grad()
def evaluate(net, ids, cfg, what):
  """Loss and perplexity of the stream `ids`, as train.evaluate reads it."""
  net.eval()
  data = torch.from_numpy(input_pipeline.batchify(ids, cfg["eval_batch_size"], what)).long()
  state, nll, count = None, 0.0, 0
  for start in range(0, data.shape[1] - 1, cfg["bptt"]):
    stop = min(start + cfg["bptt"], data.shape[1] - 1)
    logits, state = net(data[:, start:stop], state)
    nll += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                       data[:, start + 1:stop + 1].reshape(-1),
                                       reduction="sum").item()
    count += data.shape[0] * (stop - start)
  return {"loss": nll / count, "perplexity": report.perplexity(nll, count), "tokens": count}


def epoch_record(epoch, sums, steps, val, val_seconds):
  """The epoch's line of history, with examples/lm/train.py's keys."""
  nll, tokens, seconds = sums
  return {"epoch": epoch, "loss": nll / tokens, "perplexity": report.perplexity(nll, tokens),
          "val_loss": val["loss"], "val_perplexity": val["perplexity"], "tokens": tokens,
          "steps": steps, "train_seconds": seconds, "val_seconds": val_seconds,
          "tokens_per_s": tokens / seconds}


def metrics(cfg, history, net, origin, test=None):
  return {"impl": "torch", "config": cfg, "history": history, "test": test, "sample": None,
          "params": sum(p.numel() for p in net.parameters()),
          "device": f"cpu, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPU "
                    f"cores visible", "steps": None, "provenance": origin}


def main(argv=None):
  _, cfg = lm_main.parse(argv, "The IMDB language model of examples/lm, in PyTorch.",
                         prog="python -m studies.lm_torch")
  if cfg["resume"]:
    raise ValueError("--resume: the PyTorch peer keeps no checkpoints; run it from the start")
  origin = {**provenance.collect(sys.argv[1:] if argv is None else argv),
            "torch": torch.__version__}
  data = input_pipeline.load_for(cfg)
  torch.manual_seed(cfg["seed"])
  net = build(cfg)
  chunks = input_pipeline.num_chunks(data.train.shape[1] - 1, cfg["bptt"])
  opt, sched = make_optimizer(cfg, net, cfg["epochs"] * chunks)
  print(f"PyTorch {torch.__version__} {cfg['cell'].upper()} {','.join(map(str, cfg['hidden']))}, "
        f"{sum(p.numel() for p in net.parameters())} parameters", flush=True)
  history = []
  for epoch in range(1, cfg["epochs"] + 1):
    sums = train_epoch(net, opt, sched, data.train, cfg)
    t0 = time.perf_counter()
    val = evaluate(net, data.val, cfg, "validation")
    history.append(epoch_record(epoch, sums, chunks, val, time.perf_counter() - t0))
    print(report.epoch_line(history[-1]), flush=True)
    report.write_metrics(cfg["out"], metrics(cfg, history, net, origin))
  test = evaluate(net, data.test, cfg, "test")
  print(f"test ({test['tokens']} tokens) - loss: {test['loss']:.4f} - perplexity: "
        f"{test['perplexity']:.2f}")
  report.write_metrics(cfg["out"], metrics(cfg, history, net, origin, test))
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main())
  except (ValueError, imdb_text.DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
