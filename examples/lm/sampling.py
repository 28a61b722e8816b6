"""Text from the model: read a prompt, then draw one word at a time from the softmax."""

from typing import List

import jax
import jax.numpy as jnp
import numpy as np

from examples.lm import input_pipeline
from examples.lm import levels


def prompt_ids(prompt: str, vocab, level: str = "word") -> np.ndarray:
  """<eos> (a review starts after one) and the prompt's tokens, unknown ones as <unk>."""
  words = levels.LEVELS[level].split(prompt)
  return np.array([input_pipeline.EOS] + [vocab.get(w, input_pipeline.UNK) for w in words],
                  np.int32)


def sample_ids(lm, params, prompt, n_words: int, temperature: float, key) -> jax.Array:
  """`n_words` ids drawn after `prompt` int [P]: from softmax(logits / temperature), or
  the most likely word at temperature 0. The stack's `step` runs one word at a time."""
  if not temperature >= 0:
    raise ValueError(f"temperature: expected a number >= 0, got {temperature!r}")
  logits, state = lm.apply(params, prompt[None], lm.initial_state(1))  # [1, P, V]

  def draw(logits, k):
    if temperature == 0:
      return jnp.argmax(logits, axis=-1)
    return jax.random.categorical(k, logits / temperature, axis=-1)

  def body(carry, k):
    state, logits = carry
    word = draw(logits, k)  # [1]
    state, y = lm.rnn.step(params["rnn"], state, params["embed"][word])  # y [1, H]
    return (state, lm.head(params, y)), word[0]

  _, words = jax.lax.scan(body, (state, logits[:, -1]), jax.random.split(key, n_words))
  return words  # [n_words]


def sample_text(lm, params, prompt: str, vocab, words: List[str], n_words: int = 50,
                temperature: float = 1.0, seed: int = 0, level: str = "word") -> str:
  """The prompt followed by `n_words` sampled tokens (words or characters, as `level`);
  <eos> (the end of a review) shown as "|"."""
  run = jax.jit(lambda p, ids, k: sample_ids(lm, p, ids, n_words, temperature, k))
  ids = run(params, jnp.asarray(prompt_ids(prompt, vocab, level)), jax.random.key(seed))
  # ids past `words` exist when the text had fewer distinct words than the vocabulary
  name = lambda i: "|" if i == input_pipeline.EOS else words[i] if i < len(words) else "<unk>"
  drawn = (name(i) for i in np.asarray(ids))
  sep = levels.LEVELS[level].sep
  return (prompt.strip() + sep + sep.join(drawn)).strip()
