"""`checked(fn)`: a jitted `fn` whose value checks raise as they do when called eagerly.

Called eagerly, `apply` and `step` check the values of their arguments (lengths within
[0, time]) and raise a ValueError that names the argument. Under `jax.jit` the values are
not known while tracing, so a plain jitted call clamps them instead (a length past the
time axis reads as the whole sequence, a negative one as empty), documented and tested
as the one behaviour. `checked` is the opt-in third way: the same checks compiled into the
program with `jax.experimental.checkify`, raising after the call (a few comparisons and
a reduction per call).
"""

import contextlib
import functools
import threading

import jax
from jax.experimental import checkify

_STATE = threading.local()


def enabled() -> bool:
  """Whether a `checked` function is being traced (the value checks are staged then)."""
  return getattr(_STATE, "on", False)


@contextlib.contextmanager
def _checking():
  before, _STATE.on = enabled(), True
  try:
    yield
  finally:
    _STATE.on = before


def check(predicate, message, **values):
  """`checkify.check` when a `checked` function is being traced; nothing otherwise."""
  if enabled():
    checkify.check(predicate, message, **values)


def checked(fn, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)` that raises a ValueError when a value check fails.

  Example:
    >>> apply = drnn.checked(model.apply, static_argnames=("output", "train"))
    >>> apply(params, xs, jnp.array([5, 99]))   # time 20: raises ValueError: lengths ...
  """
  staged = jax.jit(checkify.checkify(fn), **jit_kwargs)

  @functools.wraps(fn)
  def run(*args, **kwargs):
    with _checking():
      error, out = staged(*args, **kwargs)
    message = error.get()
    if message is not None:
      raise ValueError(message.split(" (`check` failed)")[0])
    return out

  return run
