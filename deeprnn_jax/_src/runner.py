"""Running a stack's layers: init, apply (by a schedule), the reference, and one step.

`stacked_rnn` builds the layers (`layers.py` and its wrappers) and the layout; a
`Runner` holds them and provides the functions of the `StackedRNN` it returns.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax._src.core import checks
from deeprnn_jax._src.core import layout
from deeprnn_jax._src.core import masking
from deeprnn_jax._src.core import outputs
from deeprnn_jax._src.core import dtypes as precision
from deeprnn_jax._src.core import sharding
from deeprnn_jax._src.layers.base import Context
from deeprnn_jax._src.layers.bidirectional import check_state as check_bidirectional_state
from deeprnn_jax._src.loops.scan import loop_layer
from deeprnn_jax._src.schedules.layer import REFERENCE


class _Call(NamedTuple):
  """One call's checked inputs, cast by the precision policy."""
  params: tuple
  h: jax.Array  # [T, B, F]
  lengths: object
  state: object  # a tuple of carries, or None for zeros built per group
  keys: object  # [L] PRNG keys or None
  ctx: Context
  batch_axes: object  # the Explicit mesh axes the batch is sharded over, or None


class Runner:
  """The functions of a StackedRNN over `layers` grouped as `groups`."""

  def __init__(self, layers, groups, options, input_size):
    self.layers, self.groups, self.o = layers, groups, options
    self.input_size, self.schedule = input_size, options.schedule
    self.cells = tuple(layer.cell for layer in layers)
    depth_scan = options.time_loop.depth_scan
    if self.schedule.name == "layer" and not (
        depth_scan(options, self.cells) if callable(depth_scan) else depth_scan):
      self.schedule = REFERENCE  # layer after layer in Python: one kernel call each
    self.bidirectional = layers[0].directions == 2
    self.widths = (input_size,) + tuple(layer.width for layer in layers)

  def init(self, key, dtype=jnp.float32):
    """The stack's parameters: a tuple with one dict per group of equal layers, each leaf
    stacked [layers_in_group, ...] (`drnn.layer_params` takes one layer out).

    Args:
      key: a PRNG key (`jax.random.key(seed)`); layer l initialises from
        `jax.random.split(key, L)[l]`.
      dtype: the parameters' floating dtype (default float32).
    """
    keys = jax.random.split(key, len(self.layers))
    per_layer = [layer.init(k, w, dtype)
                 for layer, k, w in zip(self.layers, keys, self.widths)]
    return layout.stack(per_layer, self.groups)

  def initial_state(self, batch_size, dtype=jnp.float32):
    """Zeros: a tuple with one carry per layer (h [batch, H], or LSTMState(h, c); a
    (forward, backward) pair per layer when bidirectional), in `dtype`. Give the params'
    dtype for float64 params: a state narrower than the computation is refused."""
    batch_size = checks.check_batch_size(batch_size)
    return tuple(layer.initial_carry(batch_size, dtype) for layer in self.layers)

  @functools.cached_property
  def param_shapes(self):
    return jax.eval_shape(self.init, jax.random.key(0))

  def check_state(self, state, batch, argname="initial_state"):
    if self.bidirectional:
      return check_bidirectional_state(state, self.cells, batch)
    return checks.check_initial_state(state, self.cells, batch, argname=argname)

  def _prepare(self, params, xs, lengths, state, train, key, output, resets, time_loop):
    checks.check_params(params, self.param_shapes)
    checks.check_xs(xs, self.input_size)
    outputs.check_output(output)
    B, T, _ = xs.shape
    lengths = checks.check_lengths(lengths, B, T)
    resets = checks.check_resets(resets, B, T)
    policy = precision.dtypes(self.o.compute_dtype, params, xs.dtype)
    if state is not None:
      state = self.check_state(state, B)
      checks.check_state_dtype(state, policy.compute, policy.state, "initial_state")
    needs_key = train and any(layer.needs_key for layer in self.layers)
    if needs_key and key is None:
      raise ValueError("key: dropout, recurrent_dropout or zoneout in training needs a PRNG "
                       "key, got None")
    if needs_key:
      checks.check_key(key)
    keys = jax.random.split(key, len(self.layers)) if needs_key else None
    params, xs = precision.prepare(policy, params, xs)
    params = sharding.gather(params)
    xs = masking.zero_padding(xs, lengths)
    axes = sharding.batch_axes(xs, 0)
    state, lengths = sharding.follow_batch((state, lengths), axes, 0)
    resets = sharding.follow_batch(resets, axes, 1)  # resets [T, B]
    ctx = Context(time_loop=time_loop, unroll=self.o.unroll, lengths=lengths,
                  resets=resets, state_dtype=policy.state, compute_dtype=policy.compute)
    h = jnp.swapaxes(xs, 0, 1)  # [T, B, F]
    return _Call(params, h, lengths, state, keys, ctx, axes)

  def _group_carries(self, call, first, count):
    """Layers first..first+count-1's carries stacked [count, ...]. Zeros are made at that
    shape directly, so the program does not grow with depth."""
    if call.state is None:
      zero = self.layers[first].initial_carry(call.h.shape[1], call.ctx.state_dtype)
      zeros = jax.tree.map(lambda a: jnp.broadcast_to(a, (count,) + a.shape), zero)
      return sharding.follow_batch(zeros, call.batch_axes, 1)  # [count, B, ...]
    return layout.stack_carries(call.state[first:first + count])

  def _run(self, call, schedule, keep_all):
    """Every group by `schedule`: (every layer's output [T, B, W_l], final carries)."""
    h, finals, seqs = call.h, [], []
    for g, (first, count) in enumerate(self.groups):
      keys = None if call.keys is None else call.keys[first:first + count]
      indices = np.arange(first, first + count, dtype=np.int32)
      carries = self._group_carries(call, first, count)
      if count == 1 and schedule is not REFERENCE:
        # a shape-changing layer: its output cannot be a scan carry
        p, k, carry = jax.tree.map(lambda a: a[0], (call.params[g], keys, carries))
        h, carry = self.layers[first].run(p, h, carry, call.ctx._replace(
            key=k, index=jnp.asarray(indices)[0]))
        finals.append(carry)
        seqs.append(h)
        continue
      h, group_finals, group_seqs = schedule.run_group(
          self.layers[first], call.params[g], h, carries, call.ctx, keys, indices, keep_all)
      finals += layout.unstack_carries(group_finals, count)
      seqs += [h] if group_seqs is None else [group_seqs[i] for i in range(count)]
    return seqs, tuple(finals)

  def _finish(self, seqs, finals, lengths, output):
    top = jnp.swapaxes(seqs[-1], 0, 1)  # [B, T, D*H]
    if output == "all":
      ys = tuple(jnp.swapaxes(s, 0, 1) for s in seqs)  # each [B, T, D*H_l]
    elif output == "last":
      backward = self.layers[-1].width // 2 if self.bidirectional else 0
      ys = outputs.last_valid(top, lengths, backward)
    else:
      ys = top
    return ys, finals

  def apply(self, params, xs, lengths=None, initial_state=None, *, train=False, key=None,
            output="sequence", resets=None):
    """Runs the stack over a batch of sequences.

    Args:
      params: from `init`.
      xs: [batch, time, input_size], a floating jax.Array or numpy array.
      lengths: optional int [batch]: row b is valid for t < lengths[b]; what lies past it
        is never read (values nor gradients). Eagerly, values outside [0, time] raise;
        under jit they are clamped to [0, time] (`drnn.checked` raises instead).
      initial_state: optional, as `initial_state(batch)` makes it; zeros by default.
      train: dropout and zoneout act only with train=True (then `key` is needed).
      key: PRNG key for the dropout masks.
      output: "sequence" [batch, time, D*H], "last" [batch, D*H] at each row's last valid
        step, or "all" (every layer's sequence); D = 2 when bidirectional.
      resets: optional bool [batch, time]: restart a row's carry before those steps.

    Returns:
      (ys, state): the outputs `output` selects and one final carry per layer.
    """
    loop = self.o.time_loop.make(self.o)
    call = self._prepare(params, xs, lengths, initial_state, train, key, output, resets, loop)
    seqs, finals = self._run(call, self.schedule, output == "all")
    return self._finish(seqs, finals, call.lengths, output)

  def apply_reference(self, params, xs, lengths=None, initial_state=None, *, train=False,
                      key=None, output="sequence", resets=None):
    """`apply` by Python loops over layers and time steps: the same numbers, slowly (the
    reference the tests compare every fast path with)."""
    call = self._prepare(params, xs, lengths, initial_state, train, key, output, resets,
                         loop_layer)
    if call.state is None:  # built per layer, as a user would
      state = self.initial_state(call.h.shape[1], call.ctx.state_dtype)
      call = call._replace(state=sharding.follow_batch(state, call.batch_axes, 0))
    seqs, finals = self._run(call, REFERENCE, True)
    return self._finish(seqs, finals, call.lengths, output)

  def step(self, params, state, x_t, reset=None):
    """One time step through every layer, for streaming inference.

    Args:
      params: from `init`.
      state: one carry per layer (`initial_state(batch)` to start).
      x_t: [batch, input_size].
      reset: optional bool [batch]: those rows restart from zeros first.

    Returns:
      (state, y_t [batch, H_top]). Not for bidirectional stacks.
    """
    if self.bidirectional:
      return self.layers[0].step(None, None, None, None)  # raises: it cannot step
    checks.expect_array(x_t, "x_t", f"an array [batch, {self.input_size}]")
    if x_t.ndim != 2 or x_t.shape[-1] != self.input_size:
      raise ValueError(f"x_t: expected an array [batch, {self.input_size}], got "
                       f"{tuple(x_t.shape)}")
    if not jnp.issubdtype(x_t.dtype, jnp.floating):
      raise TypeError(f"x_t: expected a floating dtype, got {x_t.dtype}")
    checks.check_params(params, self.param_shapes)
    B = x_t.shape[0]
    state = self.check_state(state, B, argname="state")
    axes = sharding.batch_axes(x_t, 0)
    state, reset = sharding.follow_batch((state, reset), axes, 0)
    reset = checks.check_step_reset(reset, B)
    policy = precision.dtypes(self.o.compute_dtype, params, x_t.dtype)
    checks.check_state_dtype(state, policy.compute, policy.state, "state")
    params, x_t = precision.prepare(policy, params, x_t)
    params = sharding.gather(params)
    ctx = Context(state_dtype=policy.state, compute_dtype=policy.compute, reset=reset)
    new_state = []
    for l, layer in enumerate(self.layers):
      initial = None if reset is None else sharding.follow_batch(
          layer.initial_carry(B, policy.state), axes, 0)
      carry, x_t = layer.step(layout.layer_params(self.groups, params, l), state[l], x_t,
                              ctx._replace(index=l, initial=initial))
      new_state.append(carry)
    return tuple(new_state), x_t
