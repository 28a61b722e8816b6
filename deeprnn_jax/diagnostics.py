"""Gradient diagnostics: how large gradients are per layer (and, soon, per time step).

Deep RNNs are hard to train because gradients shrink (vanish) or grow (explode) as they
flow back through time and depth (Bengio et al. 1994; Pascanu et al. 2013). These
functions measure that for any stack `stacked_rnn` builds.
"""

import jax
import jax.numpy as jnp

from deeprnn_jax._src.stack import StackedRNN, layer_params


def param_gradient_norms(model: StackedRNN, grads) -> jax.Array:
  """The L2 norm of each layer's parameter gradient.

  Args:
    model: the StackedRNN the gradients belong to.
    grads: gradients with the structure of `model.init`'s params (a tuple of per-group
      dicts with leaves stacked [layers_in_group, ...]).

  Returns:
    [num_layers] float array: entry l is the L2 norm over all of layer l's parameter
    gradients (w_ih, w_hh, b, ...) together.

  Example:
    >>> grads = jax.grad(loss)(params)
    >>> param_gradient_norms(model, grads)   # [L]
  """
  norms = []
  for l in range(len(model.cells)):
    leaves = jax.tree.leaves(layer_params(model, grads, l))
    norms.append(jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in leaves)))
  return jnp.stack(norms)
