"""Residual connections between layers (Wu et al. 2016, GNMT): a layer wrapper.

From layer 1 on, a layer whose output is as wide as its input adds that input (before
any dropout): y_l = f_l(dropout(y_{l-1})) + y_{l-1}. Layer 0 reads the stack's inputs
and never adds them.
"""

import jax.numpy as jnp

from deeprnn_jax._src.layers.base import Layer


def residual(layer: Layer) -> Layer:
  """`layer` adding its input to its output where their widths match (not at layer 0)."""

  def run(params, h, carry, ctx):
    y, carry = layer.run(params, h, carry, ctx)
    if y.shape[-1] == h.shape[-1]:
      y = y + jnp.where(ctx.index > 0, h, 0)
    return y, carry

  def step(params, carry, x, ctx):
    carry, y = layer.step(params, carry, x, ctx)
    first = isinstance(ctx.index, int) and ctx.index == 0
    if y.shape[-1] == x.shape[-1] and not first:
      y = y + jnp.where(ctx.index > 0, x, 0)
    return carry, y

  return layer._replace(run=run, step=step)
