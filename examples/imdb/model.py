"""The sentiment classifier: embedding -> stacked RNN -> pooling -> dense -> sigmoid.

Reviews come right-padded with their `lengths`; the stack is given the lengths, so the
padding is never read: past a review's end the carry is frozen and the outputs are zero.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

import deeprnn_jax as drnn

POOLINGS = ("last", "meanmax")


class Classifier(NamedTuple):
  """A binary text classifier as pure functions, made by `classifier`.

  Attributes:
    init: `init(key) -> params`, a dict {"embed", "rnn", "dense"}.
    apply: `apply(params, tokens, lengths, *, train=False, key=None) -> logits [batch]`;
      tokens int [batch, time] right-padded with 0, lengths int [batch].
    loss: `loss(params, batch, *, key=None, train=False) -> (loss, metrics)`, binary
      cross-entropy and accuracy, for `drnn.make_train_step`; batch is a dict with
      "tokens", "lengths", "labels" and "weights" (0 for rows that only pad a batch).
    rnn: the StackedRNN in the middle.
  """

  init: Callable[..., Any]
  apply: Callable[..., Any]
  loss: Callable[..., Any]
  rnn: drnn.StackedRNN


def _rows_like(tokens):
  """The sharding of [B, T, E] word vectors looked up for `tokens` [B, T]: theirs, with E
  whole; None off a mesh."""
  spec = getattr(jax.typeof(tokens).sharding, "spec", None)
  return None if spec is None or not any(spec) else jax.sharding.PartitionSpec(*spec, None)


def _last_hidden(state):
  top = state[-1]
  return top.h if isinstance(top, drnn.LSTMState) else top  # [B, H]


def _last_output(ys, lengths):
  """The stack's output at each row's last valid step: [B, H] (zeros for an empty row)."""
  # take_along_axis, not ys[arange(B), i]: its index keeps the batch's sharding
  index = jnp.maximum(lengths - 1, 0)[:, None, None]  # [B, 1, 1]
  return jnp.take_along_axis(ys, index, axis=1)[:, 0]  # [B, H]


def _mean_max(ys, lengths):
  """Mean and max of ys [B, T, H] over each row's valid steps: [B, 2H]."""
  valid = (jnp.arange(ys.shape[1]) < lengths[:, None])[..., None]  # [B, T, 1]
  count = jnp.maximum(lengths, 1).astype(ys.dtype)[:, None]
  mean = ys.sum(axis=1) / count  # padded outputs are already zero
  top = jnp.where(valid, ys, -jnp.inf).max(axis=1)
  top = jnp.where(lengths[:, None] > 0, top, 0)  # an empty row has no max
  return jnp.concatenate([mean, top], axis=-1)  # [B, 2H]


def classifier(vocab_size: int, embed_size: int, cell: str, hidden_sizes, *,
               dropout: float = 0.0, pooling: str = "last",
               residual: bool = False, **rnn_options) -> Classifier:
  """Builds the classifier.

  Args:
    vocab_size: rows of the embedding (ids 0 padding and 1 out-of-vocabulary included).
    embed_size: width of the word vectors.
    cell: "rnn", "lstm" or "gru".
    hidden_sizes: widths of the recurrent layers, bottom first, e.g. (5, 5).
    dropout: rate on the word vectors, between recurrent layers and on the pooled
      features (training only).
    pooling: "last", the top layer's hidden state at each review's last token (what
      Keras' final LSTM returns), or "meanmax", the mean and max of the top layer's
      outputs over the valid steps, concatenated.
    residual: residual connections between the recurrent layers (`drnn.stacked_rnn`'s
      `residual`: from layer 1 on, a layer as wide as its input adds it to its output).
      Pooling "last" then reads the stack's output at the last token, which holds the
      sum, rather than the top layer's state, which does not.
    **rnn_options: more `drnn.stacked_rnn` arguments (e.g. `unroll`, `schedule`).

  Returns:
    A Classifier.
  """
  if pooling not in POOLINGS:
    raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
  rnn = drnn.stacked_rnn(cell, embed_size, hidden_sizes, dropout=dropout, residual=residual,
                        **rnn_options)
  features = rnn.hidden_sizes[-1] * (2 if pooling == "meanmax" else 1)
  causal = not rnn_options.get("bidirectional", False)
  glorot = jax.nn.initializers.glorot_uniform()

  def init(key):
    k_embed, k_rnn, k_dense = jax.random.split(key, 3)
    return {
        # Keras' Embedding default: uniform in [-0.05, 0.05]
        "embed": jax.random.uniform(k_embed, (vocab_size, embed_size), jnp.float32,
                                    -0.05, 0.05),
        "rnn": rnn.init(k_rnn),
        "dense": {"w": glorot(k_dense, (features, 1), jnp.float32),
                  "b": jnp.zeros((1,), jnp.float32)},
    }

  def apply(params, tokens, lengths, *, train=False, key=None):
    drop = train and dropout > 0
    k_embed, k_rnn, k_out = jax.random.split(key, 3) if drop else (None, None, None)
    # rows split as the tokens are: on a mesh with Explicit axes a gather must be told
    xs = params["embed"].at[tokens].get(out_sharding=_rows_like(tokens))  # [B, T, E]
    if drop:
      xs = drnn.dropout(xs, k_embed, dropout)
    if causal:
      # reviews are right-padded and every layer runs forward in time, so the outputs at
      # a review's valid steps never depend on its padding: the stack runs unmasked (the
      # per-step select that freezes finished rows' carries cost ~20% of the seed
      # model's step) and the padding is dealt with once, on the outputs
      ys, _ = rnn.apply(params["rnn"], xs, train=train, key=k_rnn)
      ys = jnp.where((jnp.arange(ys.shape[1]) < lengths[:, None])[..., None], ys, 0)
      h = _mean_max(ys, lengths) if pooling == "meanmax" else _last_output(ys, lengths)
    else:
      ys, state = rnn.apply(params["rnn"], xs, lengths, train=train, key=k_rnn)
      if pooling == "meanmax":
        h = _mean_max(ys, lengths)
      else:  # the residual sums are in ys, not in the top carry (without them: equal)
        h = _last_output(ys, lengths) if residual else _last_hidden(state)
    if drop:
      h = drnn.dropout(h, k_out, dropout)
    return (h @ params["dense"]["w"] + params["dense"]["b"])[:, 0]  # [B]

  def loss(params, batch, *, key=None, train=False):
    logits = apply(params, batch["tokens"], batch["lengths"], train=train, key=key)
    return drnn.sigmoid_binary_loss(logits, batch["labels"], batch["weights"])

  return Classifier(init=init, apply=apply, loss=loss, rnn=rnn)
