"""`drnn.keep_mask` and `drnn.dropout`: the documented draw, its statistics, bad rates.

The mask is re-derived in NumPy from the key's random words (`helpers.documented_keep`);
the statistics are checked against the binomial's spread over about a million draws.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
from helpers import documented_keep, documented_rate


@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 6), (2, 4, 5)])
def test_mask_is_the_documented_draw(shape):
  key = jax.random.key(3)
  keep, scale = drnn.keep_mask(key, 0.3, shape)
  assert keep.shape == shape and keep.dtype == jnp.bool_
  np.testing.assert_array_equal(keep, documented_keep(key, 0.3, shape))
  assert scale == 1 / (1 - documented_rate(0.3))


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.75])
def test_kept_fraction_and_mean_are_the_rates(rate):
  """Kept fraction within 5 binomial sigmas of 1 - rate; E[dropout(1)] = 1 likewise;
  the two elements that share a random word are uncorrelated."""
  n = 1 << 20
  out = np.asarray(drnn.dropout(jnp.ones((n // 64, 64)), jax.random.key(11), rate))
  keep = out > 0
  sigma = np.sqrt(rate * (1 - rate) / n)
  assert abs(keep.mean() - (1 - rate)) < 5 * sigma
  assert abs(out.mean() - 1) < 5 * sigma / (1 - rate)
  np.testing.assert_allclose(out[keep], 1 / (1 - documented_rate(rate)), rtol=1e-7)
  pairs = keep.reshape(-1, 2).astype(np.float64)
  assert abs(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) < 5 / np.sqrt(n / 2)


def test_dropout_keeps_dtype_and_zero_rate_keeps_all():
  x = jnp.linspace(-1, 1, 24, dtype=jnp.bfloat16).reshape(4, 6)
  assert drnn.dropout(x, jax.random.key(0), 0.5).dtype == jnp.bfloat16
  np.testing.assert_array_equal(drnn.dropout(x, jax.random.key(0), 0.0), x)


def test_other_keys_draw_other_masks():
  a, _ = drnn.keep_mask(jax.random.key(1), 0.5, (64, 64))
  b, _ = drnn.keep_mask(jax.random.key(2), 0.5, (64, 64))
  assert 0.4 < float(jnp.mean(a != b)) < 0.6


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_a_rate_outside_0_1_names_the_argument(rate):
  with pytest.raises(ValueError, match=r"rate: expected a dropout rate in \[0, 1\), got"):
    drnn.keep_mask(jax.random.key(0), rate, (3,))
