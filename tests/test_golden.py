"""Old code == new code: the numbers recorded by `tests/golden.py` before the core redesign.

For every grid point (cells x bidirectional x residual x dropout kinds x schedules x remat
x bf16 x layer norm, with lengths) `init`, `apply` (every layer's outputs and final
state), the gradients and `step` must give bit-identical arrays on the machine and JAX
version they were recorded with. Elsewhere XLA may round differently (another CPU's
vector width, another compiler), so there they must agree to float32 rounding instead.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import golden

META, RECORDED = golden.load()
EXACT = META["cpu"] == golden.cpu_model() and META["jax"] == jax.__version__


@pytest.mark.parametrize("point", list(golden.grid()), ids=lambda p: p[0])
def test_outputs_equal_the_recording(point):
  name, cell, nl, kwargs, train = point
  got = golden.compute(cell, nl, kwargs, train)
  want = {k.split("|", 1)[1]: v for k, v in RECORDED.items() if k.startswith(name + "|")}
  assert sorted(got) == sorted(want), "the recorded arrays differ in what they are"
  for key, value in got.items():
    if value.dtype == jnp.bfloat16:
      value = value.view(np.uint16) if EXACT else value.astype(np.float32)
      expected = want[key] if EXACT else want[key].view(jnp.bfloat16).astype(np.float32)
    else:
      expected = want[key]
    assert value.shape == expected.shape and value.dtype == expected.dtype, key
    if EXACT:
      np.testing.assert_array_equal(value, expected, err_msg=f"{name}: {key}")
    else:
      np.testing.assert_allclose(value, expected, rtol=1e-2 if "bf16" in name else 2e-5,
                                 atol=1e-2 if "bf16" in name else 2e-6,
                                 err_msg=f"{name}: {key} (recorded on {META['cpu']})")


def test_recording_names_its_commit_and_platform():
  """A recording says what produced it (`tests/golden.py` writes this)."""
  assert len(META["commit"]) == 40 and META["cpu"] and META["jax"], META
