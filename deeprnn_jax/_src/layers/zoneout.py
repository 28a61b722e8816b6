"""Zoneout (Krueger et al. 2016, "Zoneout: Regularizing RNNs by Randomly Preserving
Hidden Activations"): a layer wrapper.

In training each unit of the carry keeps its previous value with probability p, a fresh
Bernoulli draw per unit, row and step; at evaluation every unit moves by the expectation:

    training:    h_t = d_t * h_{t-1} + (1 - d_t) * h~_t,   d_t ~ Bernoulli(p) [B, H]
    evaluation:  h_t = p * h_{t-1} + (1 - p) * h~_t

where h~_t is the cell's own new carry. An LSTM zones out h and c with masks of their own
(rates `rate` and `cell_rate`, as the paper's LSTM experiments do); every part of a carry
gets its own mask. The output y_t is the zoned-out h_t. The masks are `drnn.keep_mask`
draws (the rate rounded to 1/65536): d = not keep_mask(fold_in(ctx.key, 3 + direction),
rate, [T, B, width]), one key per layer and direction.

How it reaches the time loop without touching it: in training the masks ride along with
the inputs, [x_t | d_t] [T, B, F + widths], and the wrapped cell's `project` passes them
through beside the projection while its `recur` splits them off again, so every time
loop (hoisted or not), lengths, resets and the depth scan run it unchanged. The cell it
wraps keeps its equations; it loses its fast rule and its standard kernel.
"""

import jax
import jax.numpy as jnp

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.layers.base import Layer, Wrapper, with_cell_transform
from deeprnn_jax._src.layers.dropout import keep_mask


def _mix(keep, old, new):
  """keep * old + (1 - keep) * new, in the carry's dtype."""
  keep = keep.astype(new.dtype)
  return keep * old + (1 - keep) * new


def _zoned_cell(cell, rates, widths, masked):
  """`cell` whose carry zones out: by the masks at the end of xp when `masked`, else by
  the expectations `rates`."""
  total = sum(widths)

  def project(params, x):
    if not masked:
      return cell.project(params, x)
    xp = cell.project(params, x[..., :-total])
    return jnp.concatenate([xp, x[..., -total:].astype(xp.dtype)], axis=-1)

  def recur(params, carry, xp):
    new, y = cell.recur(params, carry, xp[..., :-total] if masked else xp)
    olds, tree = jax.tree.flatten(carry)
    news = jax.tree.leaves(new)
    if masked:
      keeps = jnp.split(xp[..., -total:], list(_offsets(widths)), axis=-1)
    else:
      keeps = [jnp.asarray(r, n.dtype) for r, n in zip(rates, news)]
    mixed = jax.tree.unflatten(tree, [_mix(k, o, n) for k, o, n in zip(keeps, olds, news)])
    h = mixed.h if hasattr(mixed, "h") else mixed
    return mixed, h.astype(y.dtype)

  def step(params, carry, x):
    return recur(params, carry, project(params, x))

  return cell._replace(project=project, recur=recur, step=step, fast_rule=None, standard=None)


def _offsets(widths):
  total = 0
  for w in widths[:-1]:
    total += w
    yield total


def zoneout(rate: float, cell_rate=None) -> Wrapper:
  """The zoneout wrapper: each unit of a layer's carry keeps its previous value with
  probability `rate` in training (the LSTM's cell state with `cell_rate`, default `rate`),
  and moves by the expectation at evaluation.

  Args:
    rate: p in [0, 1) for h (and every carry part but an LSTM's c).
    cell_rate: p for the second part of a two-part carry (an LSTM's c); None: `rate`.

  Returns:
    A `Wrapper` for `stacked_rnn(..., wrappers=[...])` or `compose`; training needs a
    key (`apply(..., train=True, key=key)`).

  Example:
    >>> model = drnn.stacked_rnn("lstm", 8, (16, 16), wrappers=[drnn.zoneout(0.1, 0.05)])
  """
  rate = checks.check_rate(rate, "rate")
  cell_rate = rate if cell_rate is None else checks.check_rate(cell_rate, "cell_rate")

  def wrap(layer: Layer) -> Layer:
    def rates_and_widths(carry):
      leaves = jax.tree.leaves(carry)
      rates = [rate] + [cell_rate] * (len(leaves) - 1)
      return rates, [a.shape[-1] for a in leaves]

    def transform(cell, params, carry, ctx):
      rates, widths = rates_and_widths(carry)
      return _zoned_cell(cell, rates, widths, masked=ctx.key is not None), params

    inner = with_cell_transform(layer, transform)

    def run(params, h, carry, ctx):
      if ctx.key is None:
        return inner.run(params, h, carry, ctx)
      rates, widths = rates_and_widths(carry)
      key = jax.random.fold_in(ctx.key, 3 + ctx.direction)
      T, B = h.shape[:2]
      keeps = [~keep_mask(k, r, (T, B, w))[0]  # True: keep the previous value
               for k, r, w in zip(jax.random.split(key, len(widths)), rates, widths)]
      return inner.run(params, jnp.concatenate([h] + [k.astype(h.dtype) for k in keeps], -1),
                       carry, ctx)

    return inner._replace(run=run, needs_key=True)

  return Wrapper((("zoneout", rate),), wrap)
