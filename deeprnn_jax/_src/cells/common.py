"""What every cell shares: the weight layout and init, layer norm, the Cell builder, and
the hoisted tangents of the custom-JVP rules.

Every cell stores its weights as `x @ kernel` (Keras/Flax orientation, the transpose of
PyTorch's): `w_ih` [input_size, G*H], `w_hh` [H, G*H], `b` [G*H], gate blocks side by side
along the last axis in the order its docstring states. The GRU also has `b_hn` [H].

With `layer_norm=True` (LSTM and GRU; Ba et al. 2016, "Layer Normalization") the input
and the recurrent projections are normalised separately, each gate block on its own,
before they are added:

    LN(a) = (a - mean(a)) / sqrt(var(a) + 1e-5), mean and var over each H-wide gate block
    xp = LN(x_t @ w_ih) * ln_ih_scale + b
    hp = LN(h_{t-1} @ w_hh) * ln_hh_scale

and the LSTM also normalises its cell state before the output tanh:
h_t = sigmoid(o) * tanh(LN(c_t) * ln_c_scale + ln_c_bias). Extra params: `ln_ih_scale`,
`ln_hh_scale` [G*H] (init 1), and for the LSTM `ln_c_scale` (1), `ln_c_bias` (0) [H].
Ba et al. give each projection's LN a shift as well; b (and the GRU's b_hn) already is
that shift, so the two extra ones would be redundant and are left out.

Each cell writes its equations once, as a step that also returns the residuals its
custom-JVP rule needs; its `recur` is that step without them (XLA drops the unused
values), so the fast rule and autodiff differentiate the same maths.
"""

import jax
import jax.numpy as jnp

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.core import dtypes as precision
from deeprnn_jax._src.core import initializers as inits
from deeprnn_jax._src.core.types import Cell

LN_EPSILON = 1e-5  # PyTorch's nn.LayerNorm default


def check_size(value, argname):
  return checks.check_positive_int(value, argname)


def block_norm(a, blocks):
  """Normalises each of `blocks` equal parts of the last axis (mean 0, variance 1)."""
  shape, dtype = a.shape, a.dtype
  # statistics in float32 at least: bf16 sums over H values lose too many digits
  # (no promote_types: it refuses bf16 + f32 under strict dtype promotion)
  a = a.astype(jnp.float32 if jnp.finfo(dtype).bits < 32 else dtype)
  a = a.reshape(shape[:-1] + (blocks, shape[-1] // blocks))  # [..., G, H]
  mean = a.mean(-1, keepdims=True)
  var = jnp.square(a - mean).mean(-1, keepdims=True)
  return ((a - mean) * jax.lax.rsqrt(var + LN_EPSILON)).reshape(shape).astype(dtype)


def recurrent(params, h, gates, layer_norm):
  """h @ w_hh [B, G*H], block-normalised and scaled when the cell has layer norm."""
  hp = precision.dot(h, params["w_hh"], params["b"].dtype)
  if layer_norm:
    hp = block_norm(hp, gates) * params["ln_hh_scale"]
  return hp


def without_residuals(step):
  """A cell's `recur` from its step with residuals."""
  return lambda params, carry, xp: step(params, carry, xp)[0]


def make_cell(kind, hidden_size, gates, recur, init_fn, carry_fn, layer_norm=False,
              fast_rule=None, output_size=None, standard=None, recurrent_mask="carry"):
  """Builds the Cell from a cell's recurrence; project and step are shared. A layer-norm
  cell has no fast rule and computes no standard kernel's equations."""

  def project(params, x):
    xp = precision.dot(x, params["w_ih"], params["b"].dtype)
    if layer_norm:
      xp = block_norm(xp, gates) * params["ln_ih_scale"]
    return xp + params["b"]

  def step(params, carry, x):
    return recur(params, carry, project(params, x))

  return Cell(init=init_fn, project=project, recur=recur, step=step,
              initial_carry=carry_fn, hidden_size=hidden_size, kind=kind, gates=gates,
              layer_norm=layer_norm, fast_rule=None if layer_norm else fast_rule,
              output_size=output_size, standard=None if layer_norm else standard,
              recurrent_mask=recurrent_mask)


def add_ln_params(hidden_size, gates, cell_state):
  """Init-time extra: layer-norm gains of 1 (and the LSTM's cell-state shift of 0)."""

  def extra(params, dtype):
    params["ln_ih_scale"] = jnp.ones((gates * hidden_size,), dtype)
    params["ln_hh_scale"] = jnp.ones((gates * hidden_size,), dtype)
    if cell_state:
      params["ln_c_scale"] = jnp.ones((hidden_size,), dtype)
      params["ln_c_bias"] = jnp.zeros((hidden_size,), dtype)
    return params

  return extra


def chain(*extras):
  def extra(params, dtype):
    for e in extras:
      params = e(params, dtype)
    return params

  return extra


def check_layer_norm(layer_norm):
  return checks.check_flag(layer_norm, "layer_norm")


def init_fn(hidden_size, gates, kernel_init, recurrent_init, bias_init, extra=None,
            rows=None):
  """`rows`: the width of the h that w_hh reads (hidden_size, or an LSTM's proj_size)."""
  rows = hidden_size if rows is None else rows

  def init(key, input_size, dtype=jnp.float32):
    check_size(input_size, "input_size")
    k_ih, k_hh, k_b = jax.random.split(key, 3)
    params = {
        "w_ih": kernel_init(k_ih, (input_size, gates * hidden_size), dtype),
        "w_hh": inits.per_gate(recurrent_init, k_hh, (rows, gates * hidden_size),
                               gates, dtype),
        "b": bias_init(k_b, (gates * hidden_size,), dtype),
    }
    if extra is not None:
      params = extra(params, dtype)
    return params

  return init


def h_carry(hidden_size):
  def initial_carry(batch_size, dtype=jnp.float32):
    return jnp.zeros((batch_size, hidden_size), dtype)

  return initial_carry


# The tangent parts that need no recurrence, for all steps at once ([T, B, G*H] each):
# one matmul over all T*B rows each; in reverse mode they become the weight gradients
# X^T @ dGates and H_prev^T @ dGates and the input gradient dGates @ w_ih^T.

def hoisted_dense(params, dparams, xs, dxs, h_prev):
  dxp = (jnp.einsum("tbf,fg->tbg", dxs, params["w_ih"])
         + jnp.einsum("tbf,fg->tbg", xs, dparams["w_ih"]) + dparams["b"])  # [T, B, G*H]
  dhp = jnp.einsum("tbh,hg->tbg", h_prev, dparams["w_hh"])  # [T, B, G*H]
  return dxp, dhp


def hoisted_sum(params, dparams, xs, dxs, h_prev):
  dxp, dhp = hoisted_dense(params, dparams, xs, dxs, h_prev)
  return dxp + dhp
