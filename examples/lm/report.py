"""What a run leaves in --out: metrics.json and curves.png, the same for both trainers.

examples/lm (JAX) and studies/lm_torch.py (PyTorch) write one schema, so studies/lm.py
reads either with `row`. Nothing here imports JAX or PyTorch.
"""

import json
import math
import os


def perplexity(nll_sum: float, count: float) -> float:
  """exp of the mean negative log-likelihood per token (inf if it overflows)."""
  mean = nll_sum / count
  return math.exp(mean) if mean < 700 else math.inf


def bits(loss: float) -> float:
  """A mean NLL in nats as bits per token: bits per character at the char level."""
  return loss / math.log(2)


def epoch_line(r: dict) -> str:
  return (f"epoch {r['epoch']} - {r['train_seconds']:.0f}s training, "
          f"{r['tokens_per_s']:.0f} tokens/s - loss: {r['loss']:.4f} - perplexity: "
          f"{r['perplexity']:.2f} - val_loss: {r['val_loss']:.4f} - val_perplexity: "
          f"{r['val_perplexity']:.2f}")


def write_metrics(out: str, metrics: dict) -> None:
  """metrics.json (atomically: a reader never sees half a file) and curves.png."""
  if not out:
    return
  os.makedirs(out, exist_ok=True)
  tmp = os.path.join(out, ".metrics.json.tmp")
  with open(tmp, "w") as f:
    json.dump(metrics, f, indent=1)
  os.replace(tmp, os.path.join(out, "metrics.json"))
  if metrics["history"]:
    plot_curves(metrics["history"], os.path.join(out, "curves.png"), metrics["config"],
                metrics["impl"])


def plot_curves(history, path, cfg, impl):
  """Training and validation perplexity per epoch (log scale)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  epochs = [r["epoch"] for r in history]
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot(epochs, [r["perplexity"] for r in history], "o-", label="train")
  ax.plot(epochs, [r["val_perplexity"] for r in history], "s-", label="validation")
  ax.set_yscale("log")
  ax.set_xlabel("epoch")
  ax.set_ylabel("perplexity")
  ax.grid(alpha=0.3, which="both")
  ax.legend()
  ax.set_title(f"IMDB LM ({impl}), LSTM {','.join(map(str, cfg['hidden']))}, "
               f"vocab {cfg['vocab']}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def row(metrics: dict) -> dict:
  """One line of a study: what a run measured, read from its metrics.json."""
  history, cfg, origin = metrics["history"], metrics["config"], metrics["provenance"] or {}
  seconds = [r["train_seconds"] + r["val_seconds"] for r in history]
  tokens = sum(r["tokens"] for r in history)
  return {"impl": metrics["impl"], "depth": len(cfg["hidden"]), "hidden": list(cfg["hidden"]),
          "level": cfg.get("level", "word"), "cell": cfg.get("cell", "lstm"),
          "residual": cfg.get("residual", False), "time_loop": cfg.get("time_loop", "scan"),
          "params": metrics["params"], "val_perplexity": history[-1]["val_perplexity"],
          "test_perplexity": metrics["test"]["perplexity"],
          "val_bits": bits(history[-1]["val_loss"]), "test_bits": bits(metrics["test"]["loss"]),
          "train_bits": bits(history[-1]["loss"]),
          "curve": [{"tokens": c["tokens"], "val_bits": bits(c["val_loss"])}
                    for c in metrics.get("curve", [])],
          "seconds_per_epoch": sum(seconds) / len(seconds),
          "tokens_per_s": tokens / sum(r["train_seconds"] for r in history),
          "epochs": len(history), "tokens_per_epoch": history[-1]["tokens"],
          "cpu": origin.get("cpu"), "cpus_usable": origin.get("cpus_usable"),
          "jax": origin.get("jax"), "torch": origin.get("torch"),
          "git_commit": origin.get("git_commit"), "git_clean": origin.get("git_clean"),
          "utc": origin.get("utc"), "command": origin.get("command")}
