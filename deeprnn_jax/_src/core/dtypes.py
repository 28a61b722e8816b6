"""The dtype policy: matmuls in a compute dtype, the state and its arithmetic wider.

The policy of `stacked_rnn(..., compute_dtype=)` (that of cuDNN and of automatic mixed
precision): parameters are stored in their own dtype (float32) and cast inside `apply`, so
their gradients come back in it. The matmul operands (inputs, h, `w_ih`, `w_hh`) are in
the compute dtype (e.g. bfloat16) and each matmul accumulates into the state dtype, the
wider of the parameter and compute dtypes; biases, gate nonlinearities, the cell state
and the carry stay in the state dtype, so that rounding does not build up over time steps.
Each layer's outputs come in the compute dtype: they are the next layer's matmul operand.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp



def cast_floating(tree, dtype):
  """Every floating leaf of `tree` cast to `dtype` (a no-op where it already is)."""
  def cast(a):
    return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

  return jax.tree.map(cast, tree)


WEIGHTS = ("w_ih", "w_hh", "w_hr")  # the matmul operands among a cell's parameters


def dot(a, w, out_dtype):
  """a @ w with `a` in w's dtype (the compute dtype), accumulated and returned in
  `out_dtype` (the state dtype): a bf16 x bf16 product summed in float32."""
  return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=out_dtype)


def cast_params(params, compute_dtype, state_dtype_):
  """The cell weights (`WEIGHTS`) cast to `compute_dtype`, every other floating
  parameter (biases, layer-norm gains) to `state_dtype_`."""
  def cast(path, a):
    if not jnp.issubdtype(a.dtype, jnp.floating):
      return a
    name = getattr(path[-1], "key", None) if path else None
    return a.astype(compute_dtype if name in WEIGHTS else state_dtype_)

  return jax.tree_util.tree_map_with_path(cast, params)


def first_floating_dtype(tree, default=jnp.float32):
  """The dtype of the first floating leaf of `tree` (the parameters' dtype)."""
  for leaf in jax.tree.leaves(tree):
    if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
      return jnp.dtype(leaf.dtype)
  return jnp.dtype(default)


def state_dtype(param_dtype, compute_dtype):
  """The dtype a stack keeps its state in: the wider of the two (float32 for 16-bit pairs).

  Written out rather than `jnp.promote_types`, which strict dtype promotion refuses for
  bfloat16 and float32.
  """
  a, b = jnp.dtype(param_dtype), jnp.dtype(compute_dtype)
  if a == b:
    return a
  bits_a, bits_b = jnp.finfo(a).bits, jnp.finfo(b).bits
  if bits_a == bits_b:  # float16 and bfloat16: neither holds the other
    return jnp.dtype(jnp.float32)
  return a if bits_a > bits_b else b


class Dtypes(NamedTuple):
  """The dtypes of one call: `compute` for matmul operands and outputs, `state` for the
  carry, biases and gate arithmetic."""
  compute: Any
  state: Any


def dtypes(compute_dtype, params, input_dtype) -> Dtypes:
  """The policy for `params` and inputs of `input_dtype`: matmuls in `compute_dtype`
  (None: the inputs' dtype), the state in the wider of that and the params' dtype."""
  compute = jnp.dtype(input_dtype) if compute_dtype is None else jnp.dtype(compute_dtype)
  return Dtypes(compute, state_dtype(first_floating_dtype(params), compute))


def prepare(policy: Dtypes, params, x):
  """Params and inputs as a call computes with them (weights in the compute dtype,
  other floating params in the state dtype, inputs in the compute dtype)."""
  return cast_params(params, policy.compute, policy.state), x.astype(policy.compute)
