"""The language model: embedding -> stacked LSTM or GRU -> linear -> softmax over the vocabulary.

As Zaremba et al. 2014 ("Recurrent Neural Network Regularization") and PyTorch's
word_language_model: dropout on the word vectors, between the LSTM layers (the stack's
own) and on the top layer's outputs; every weight uniform in [-init_range, init_range],
biases zero except the LSTM's forget gate (1, the library's default: remember at init).
With `tie`, the output layer is the embedding matrix transposed (Press & Wolf 2017;
Inan et al. 2017), which needs the top LSTM layer as wide as the embedding. With
`residual`, each layer above the first adds its input to its output (Wu et al. 2016):
what lets stacks of 4-8 layers train.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

import deeprnn_jax as drnn


class LanguageModel(NamedTuple):
  """A word-level language model as pure functions, made by `language_model`.

  Attributes:
    init: `init(key) -> params`, a dict {"embed", "rnn", "out"}.
    apply: `apply(params, tokens, state, lengths=None, *, train=False, key=None) ->
      (logits, state)`; tokens int [batch, time], logits [batch, time, vocab]; state one
      carry per layer, as `rnn.apply` takes and returns it.
    head: `head(params, ys) -> logits`, the output layer alone; ys [..., hidden].
    nll: `nll(params, state, inputs, targets, lengths, *, train=False, key=None) ->
      ((nll sum, token count), state)`: the summed negative log-likelihood of `targets`
      [batch, time] over the first `lengths` [batch] steps of each row.
    train_loss: `train_loss(params, state, inputs, targets, lengths, key) -> (loss,
      state)`, the mean NLL with dropout, in the form `drnn.tbptt_train` calls.
    initial_state: `initial_state(batch_size)`: zeros.
    rnn: the StackedRNN in the middle.
  """

  init: Callable[..., Any]
  apply: Callable[..., Any]
  head: Callable[..., Any]
  nll: Callable[..., Any]
  train_loss: Callable[..., Any]
  initial_state: Callable[..., Any]
  rnn: drnn.StackedRNN


def uniform(scale):
  """An initialiser (key, shape, dtype) drawing from U(-scale, scale)."""
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype,
                                                                  -scale, scale)


def check_tie(embed_size, hidden_sizes):
  if hidden_sizes[-1] != embed_size:
    raise ValueError(
        f"tie: tied embeddings use the embedding matrix [vocab, embed] as the output layer, "
        f"so the top LSTM layer must be as wide as the embedding; expected hidden_sizes[-1] "
        f"== embed_size == {embed_size}, got hidden_sizes {tuple(hidden_sizes)}")


def language_model(vocab_size: int, embed_size: int, hidden_sizes, *, dropout: float = 0.0,
                   tie: bool = False, init_range: float = 0.1, cell: str = "lstm",
                   residual: bool = False, time_loop: str = "scan") -> LanguageModel:
  """Builds the model.

  Args:
    vocab_size: V, rows of the embedding and width of the softmax.
    embed_size: E, width of the word vectors.
    hidden_sizes: widths of the LSTM layers, bottom first, e.g. (200, 200).
    dropout: rate on the word vectors, between layers and on the top outputs (training).
    tie: share the embedding matrix with the output layer (needs hidden_sizes[-1] == E).
    init_range: every weight starts uniform in [-init_range, init_range].
    cell: "lstm" or "gru".
    residual: skip connections around every layer but the first (equal widths there).
    time_loop: `drnn.stacked_rnn`'s ("auto": oneDNN's fused loop where it is faster).
  """
  hidden_sizes = tuple(hidden_sizes)
  if tie:
    check_tie(embed_size, hidden_sizes)
  init = uniform(init_range)
  rnn = drnn.stacked_rnn(cell, embed_size, hidden_sizes, dropout=dropout, kernel_init=init,
                         recurrent_init=init, residual=residual, time_loop=time_loop)

  def init_params(key):
    k_embed, k_rnn, k_out = jax.random.split(key, 3)
    out = {"b": jnp.zeros((vocab_size,), jnp.float32)}
    if not tie:
      out["w"] = init(k_out, (hidden_sizes[-1], vocab_size))
    return {"embed": init(k_embed, (vocab_size, embed_size)), "rnn": rnn.init(k_rnn),
            "out": out}

  def head(params, ys):
    w = params["embed"].T if tie else params["out"]["w"]  # [H, V]
    return ys @ w + params["out"]["b"]

  def apply(params, tokens, state, lengths=None, *, train=False, key=None):
    drop = train and dropout > 0
    k_embed, k_rnn, k_out = jax.random.split(key, 3) if drop else (None, None, None)
    xs = params["embed"][tokens]  # [B, T, E]
    if drop:
      xs = drnn.dropout(xs, k_embed, dropout)
    ys, state = rnn.apply(params["rnn"], xs, lengths, state, train=train, key=k_rnn)
    if drop:
      ys = drnn.dropout(ys, k_out, dropout)
    return head(params, ys), state  # [B, T, V]

  def nll(params, state, inputs, targets, lengths, *, train=False, key=None):
    logits, state = apply(params, inputs, state, lengths, train=train, key=key)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [B, T]
    valid = jnp.arange(inputs.shape[1])[None, :] < lengths[:, None]  # padding past the end
    return (jnp.where(valid, losses, 0.0).sum(), valid.sum()), state

  def train_loss(params, state, inputs, targets, lengths, key):
    (total, count), state = nll(params, state, inputs, targets, lengths, train=True, key=key)
    return total / jnp.maximum(count, 1).astype(total.dtype), state

  return LanguageModel(init=init_params, apply=apply, head=head, nll=nll,
                       train_loss=train_loss, initial_state=rnn.initial_state, rnn=rnn)
