"""Input validation: clear errors that name the argument, what was expected and what came."""

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax._src.core import checked
from deeprnn_jax._src.core.types import LSTMState


def is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def is_array(x) -> bool:
  """A JAX or NumPy array (tracers included): what `jnp` reads without a copy or a guess.
  Another library's tensor (torch, tf) has `shape` and `dtype` too, but its dtype is not
  a NumPy dtype, and JAX would fail on it deep inside."""
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _type_name(x):
  module = type(x).__module__.split(".")[0]
  return type(x).__name__ if module == "builtins" else f"{module}.{type(x).__name__}"


def expect_array(x, name, what):
  """Raises a TypeError naming `name` unless x is a JAX or NumPy array."""
  if not is_array(x):
    hint = " (convert it with np.asarray or jnp.asarray first)" if hasattr(x, "shape") else ""
    raise TypeError(f"{name}: expected {what} as a jax.Array or numpy.ndarray, "
                    f"got {_type_name(x)}{hint}")


def check_xs(xs, input_size):
  expect_array(xs, "xs", f"an array [batch, time, {input_size}]")
  if xs.ndim != 3:
    raise ValueError(f"xs: expected rank 3 [batch, time, features], got rank {xs.ndim} "
                     f"with shape {tuple(xs.shape)}")
  if xs.shape[-1] != input_size:
    raise ValueError(f"xs: expected {input_size} features (input_size) in the last axis, "
                     f"got shape {tuple(xs.shape)}")
  if not jnp.issubdtype(xs.dtype, jnp.floating):
    raise TypeError(f"xs: expected a floating dtype, got {xs.dtype}")
  if xs.shape[1] == 0:
    raise ValueError(f"xs: expected at least one time step, got shape {tuple(xs.shape)}")


def check_lengths(lengths, batch, time):
  """Returns `lengths` as an int32 array [B], or raises."""
  if lengths is None:
    return None
  if not is_array(lengths):
    if hasattr(lengths, "dtype"):
      expect_array(lengths, "lengths", f"an integer array ({batch},)")
    lengths = np.asarray(lengths)
  if not jnp.issubdtype(lengths.dtype, jnp.integer):
    raise TypeError(f"lengths: expected an integer dtype, got {lengths.dtype}")
  if tuple(lengths.shape) != (batch,):
    raise ValueError(f"lengths: expected shape ({batch},) (one length per batch row), "
                     f"got {tuple(lengths.shape)}")
  if is_concrete(lengths):
    values = np.asarray(lengths)
    if values.size and (values.min() < 0 or values.max() > time):
      raise ValueError(f"lengths: expected values in [0, {time}] (the time axis of xs), "
                       f"got min {values.min()} and max {values.max()}")
    return jnp.asarray(lengths, jnp.int32)
  # traced: the values are unknown here. `drnn.checked` stages the same check; a plain
  # jit clamps to [0, time], the documented behaviour (a length past T is the whole row)
  lengths = jnp.asarray(lengths, jnp.int32)
  checked.check(jnp.all((lengths >= 0) & (lengths <= time)),
                f"lengths: expected values in [0, {time}] (the time axis of xs), "
                "got min {low} and max {high}", low=jnp.min(lengths), high=jnp.max(lengths))
  return jnp.clip(lengths, 0, time)


def _expect_array(x, shape, name):
  expect_array(x, name, f"an array of shape {shape}")
  if tuple(x.shape) != shape:
    raise ValueError(f"{name}: expected shape {shape}, got {tuple(x.shape)}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")


def check_initial_state(state, cells, batch, argname="initial_state"):
  """Returns `initial_state` as a tuple of per-layer carries, or raises."""
  if not isinstance(state, (tuple, list)) or isinstance(state, LSTMState):
    raise TypeError(f"{argname}: expected a tuple with one carry per layer "
                    f"({len(cells)} layers), got {type(state).__name__}")
  if len(state) != len(cells):
    raise ValueError(f"{argname}: expected {len(cells)} entries (one per layer), "
                     f"got {len(state)}")
  return tuple(_check_carry(carry, cell, batch, f"{argname}[{l}]")
               for l, (carry, cell) in enumerate(zip(state, cells)))


def _check_carry(carry, cell, batch, name):
  """One layer's carry against the structure and shapes of its cell's zero carry."""
  want = jax.eval_shape(lambda: cell.initial_carry(batch))
  if isinstance(want, tuple) and hasattr(want, "_fields"):  # LSTMState or a user's carry
    fields = ", ".join(want._fields)
    shapes = " and ".join(f"{f} of shape {tuple(getattr(want, f).shape)}" for f in want._fields)
    if type(want) is LSTMState and len(set(a.shape for a in want)) == 1:
      shapes = f"h and c of shape {want.h.shape}"
    if not isinstance(carry, (tuple, list)) or len(carry) != len(want):
      raise TypeError(f"{name}: expected {type(want).__name__}({fields}) with {shapes}, "
                      f"got {type(carry).__name__}")
    for f, c in zip(want._fields, carry):
      _expect_array(c, getattr(want, f).shape, f"{name}.{f}")
    return type(want)(*carry)
  _expect_array(carry, want.shape, name)
  return carry


def check_dropout(rate):
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
    raise ValueError(f"dropout: expected a rate in [0, 1), got {rate!r}")
  return float(rate)


def check_hidden_sizes(hidden_sizes):
  if isinstance(hidden_sizes, int) and not isinstance(hidden_sizes, bool):
    hidden_sizes = (hidden_sizes,)
  try:
    sizes = tuple(hidden_sizes)
  except TypeError:
    raise TypeError(f"hidden_sizes: expected a sequence of positive ints, "
                    f"got {hidden_sizes!r}") from None
  if not sizes:
    raise ValueError("hidden_sizes: expected at least one layer, got an empty sequence")
  for l, h in enumerate(sizes):
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h <= 0:
      raise ValueError(f"hidden_sizes[{l}]: expected a positive int, got {h!r}")
  return tuple(int(h) for h in sizes)


def check_params(params, want):
  """Raises unless `params` has the tree structure and leaf shapes of `want` (what the
  model's `init` makes, as ShapeDtypeStructs): params of another model would otherwise
  fail deep inside a matmul, or broadcast into a silent wrong answer."""
  want_tree, got_tree = jax.tree.structure(want), jax.tree.structure(params)
  if want_tree != got_tree:
    raise ValueError(f"params: expected the structure of model.init(key), {want_tree}, "
                     f"got {got_tree}")
  for (path, w), g in zip(jax.tree_util.tree_flatten_with_path(want)[0],
                          jax.tree.leaves(params)):
    name = f"params{jax.tree_util.keystr(path)}"
    expect_array(g, name, f"a floating array of shape {w.shape}")
    if tuple(g.shape) != w.shape:
      raise ValueError(f"{name}: expected shape {w.shape} (params of another model?), "
                       f"got {tuple(g.shape)}")
    if not jnp.issubdtype(g.dtype, jnp.floating):
      raise TypeError(f"{name}: expected a floating dtype (as model.init makes), "
                      f"got {g.dtype}")


def check_key(key):
  """Raises unless `key` is a PRNG key: a typed key array or a raw uint32 [2] key."""
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return
  if dtype == np.uint32 and tuple(key.shape) == (2,):
    return
  got = type(key).__name__ if dtype is None else f"{dtype} of shape {tuple(key.shape)}"
  raise TypeError(f"key: expected a PRNG key from jax.random.key(seed), got {got}")


def check_batch_size(batch_size):
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or batch_size <= 0:
    raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
  return int(batch_size)


def check_resets(resets, batch, time):
  """Returns `resets` as a time-major bool array [T, B], or None, or raises."""
  if resets is None:
    return None
  if not is_array(resets):
    if hasattr(resets, "dtype"):
      expect_array(resets, "resets", f"a bool array ({batch}, {time})")
    resets = np.asarray(resets)
  if resets.dtype != np.bool_:
    raise TypeError(f"resets: expected a bool array [batch, time], got dtype {resets.dtype}")
  if tuple(resets.shape) != (batch, time):
    raise ValueError(f"resets: expected shape ({batch}, {time}) [batch, time], "
                     f"got {tuple(resets.shape)}")
  return jnp.swapaxes(jnp.asarray(resets), 0, 1)  # [T, B]


def check_flag(value, argname):
  if not isinstance(value, bool):
    raise TypeError(f"{argname}: expected True or False, got {value!r}")
  return value


def check_rate(rate, argname):
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
    raise ValueError(f"{argname}: expected a rate in [0, 1), got {rate!r}")
  return float(rate)


def check_positive_int(value, argname):
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f"{argname}: expected a positive int, got {value!r}")
  return value


def check_compute_dtype(dtype):
  if dtype is None:
    return None
  try:
    dtype = jnp.dtype(dtype)
  except TypeError:
    raise TypeError(f"compute_dtype: expected None or a floating dtype such as "
                    f"jnp.bfloat16, got {dtype!r}") from None
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"compute_dtype: expected a floating dtype, got {dtype}")
  return dtype


def check_step_reset(reset, batch):
  """Returns `reset` as a bool array [B], or None, or raises."""
  if reset is None:
    return None
  if not is_array(reset):
    if hasattr(reset, "dtype"):
      expect_array(reset, "reset", f"a bool array ({batch},)")
    reset = np.asarray(reset)
  if reset.dtype != np.bool_ or tuple(reset.shape) != (batch,):
    raise ValueError(f"reset: expected a bool array ({batch},) [batch], got "
                     f"{reset.dtype}{list(reset.shape)}")
  return jnp.asarray(reset)


def check_state_dtype(state, compute_dtype, state_dtype, argname):
  """Raises unless every floating leaf of `state` is at least as wide as the compute
  dtype. A state is kept in the dtype it comes in (a bf16 state under bf16 compute stays
  bf16), but one narrower than the inputs would silently round every step of a wider
  computation: a float32 `initial_state(B)` fed to float64 params and inputs."""
  if state is None:
    return
  bits = jnp.finfo(compute_dtype).bits
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if jnp.issubdtype(leaf.dtype, jnp.floating) and jnp.finfo(leaf.dtype).bits < bits:
      raise TypeError(f"{argname}{jax.tree_util.keystr(path)}: expected a state in "
                      f"{jnp.dtype(state_dtype).name} (the state dtype of this call's params "
                      f"and inputs), got {leaf.dtype}, narrower than the {compute_dtype} "
                      f"inputs; make it with initial_state(batch_size, "
                      f"jnp.{jnp.dtype(state_dtype).name})")
