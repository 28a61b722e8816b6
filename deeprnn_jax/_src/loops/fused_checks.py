"""What a fused kernel (one call per layer: cuDNN's, oneDNN's) cannot run, as errors that
name the argument, what was expected and what came."""

import jax
import jax.numpy as jnp


def check_layer_schedule(name, options):
  if options.schedule.name != "layer":
    raise ValueError(f"time_loop: {name} runs each layer whole; expected schedule='layer', "
                     f"got schedule={options.schedule.name!r}; use time_loop='scan'")


def check_no_resets(name, engine, resets):
  if resets is not None:
    raise ValueError(f"resets: {name} expected None ({engine} cannot restart a carry inside "
                     f"a sequence), got a bool array {list(resets.shape)[::-1]}; use "
                     f"time_loop='scan'")


def check_float32(name, params, carry, xs):
  dtypes = sorted({str(jnp.dtype(a.dtype)) for a in jax.tree.leaves((params, carry, xs))})
  if dtypes != ["float32"]:
    raise ValueError(f"xs: {name} expected float32 params, states and inputs, got "
                     f"{', '.join(dtypes)}")
