"""A Flax linen Module around a stack, so that it drops into Flax models.

Flax has no stacked RNN (a StackedRNNCell was declined as out of scope), no dropout
between layers and leaves padded outputs unzeroed; this adapter brings ours into a linen
model as one submodule. Its only variable is the param "stack", exactly the pytree of
`model.init(key)`, so params move between `model.apply` and the Flax model unchanged.
Imported on first use of `deeprnn_jax.FlaxStackedRNN`: the library itself needs no Flax.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deeprnn_jax._src.stack import StackedRNN


class FlaxStackedRNN(nn.Module):
  """`model.apply` as a linen Module; its params are `model.init`'s, under "stack".

  Attributes:
    model: a `StackedRNN` from `stacked_rnn`.
    param_dtype: dtype of the params that `init` makes.

  Example:
    >>> rnn = FlaxStackedRNN(stacked_rnn("lstm", 16, (32, 32), dropout=0.2))
    >>> variables = rnn.init(jax.random.key(0), xs)           # {"params": {"stack": ...}}
    >>> ys, state = rnn.apply(variables, xs, lengths, train=True,
    ...                       rngs={"dropout": jax.random.key(1)})
  """

  model: StackedRNN
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, xs, lengths=None, initial_state=None, train: bool = False,
               output: str = "sequence"):
    """Runs the stack: (ys, state) exactly as `model.apply` returns them.

    Args:
      xs: [batch, time, input_size].
      lengths: optional int [batch], valid steps per sequence.
      initial_state: optional state, as `model.initial_state(batch)` makes it.
      train: turns dropout on; its masks come from the "dropout" PRNG stream
        (`rngs={"dropout": key}` in `apply`).
      output: "sequence", "last" or "all", as in `model.apply`.

    Returns:
      (ys, state) of `model.apply`.
    """
    params = self.param("stack", lambda key: self.model.init(key, self.param_dtype))
    # without a "dropout" stream the stack itself says a key is needed, if it is
    key = self.make_rng("dropout") if train and self.has_rng("dropout") else None
    return self.model.apply(params, xs, lengths, initial_state, train=train, key=key,
                            output=output)
