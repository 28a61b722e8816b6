"""What the docs claim about the compiled program, checked on the program itself.

Outputs alone cannot show these: a bf16 model whose matmuls silently ran in float32, or a
default gradient that silently fell back to autodiff, gives the same numbers to within
the tolerances of every other test. So these tests read the jaxpr and XLA's memory
analysis.
"""

import sys

import jax
import jax.numpy as jnp
import pytest
from jax.extend import core as jcore

import deeprnn_jax as drnn


def _eqns(jaxpr):
  """Every equation of `jaxpr` and of the jaxprs nested in it (scan, jit, custom_jvp)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, jcore.ClosedJaxpr):
          yield from _eqns(sub.jaxpr)
        elif isinstance(sub, jcore.Jaxpr):
          yield from _eqns(sub)


def _dots(fn, *args):
  """(operand dtypes, output dtype) of every dot_general in fn's forward program."""
  jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
  return [(tuple(str(v.aval.dtype) for v in e.invars), str(e.outvars[0].aval.dtype))
          for e in _eqns(jaxpr) if e.primitive.name == "dot_general"]


def _primitives(fn, *args):
  return {e.primitive.name for e in _eqns(jax.make_jaxpr(fn)(*args).jaxpr)}


BF16_CASES = [("rnn", {}), ("lstm", {}), ("gru", {}), ("lstm", {"layer_norm": True}),
              ("gru", {"bidirectional": True}), ("lstm", {"recurrent_dropout": 0.3}),
              ("rnn", {"schedule": "wavefront"}), ("gru", {"remat": True})]


@pytest.mark.parametrize("kind,options", BF16_CASES, ids=lambda v: str(v))
def test_bf16_matmuls_take_bf16_operands_and_accumulate_in_float32(kind, options):
  """README/precision.py: "the matmul operands are in the compute dtype and each matmul
  accumulates into the state dtype" -- every forward dot_general is bf16 x bf16 -> f32."""
  model = drnn.stacked_rnn(kind, 3, (4, 4, 4), compute_dtype=jnp.bfloat16, **options)
  params = model.init(jax.random.key(0))  # float32 params
  xs = jnp.ones((2, 5, 3), jnp.float32)
  train = options.get("recurrent_dropout", 0) > 0
  apply = lambda p, x: model.apply(p, x, jnp.array([5, 3]), train=train,
                                   key=jax.random.key(1) if train else None)[0]
  dots = _dots(apply, params, xs)
  assert dots, "no matmul found in the program"
  assert set(dots) == {(("bfloat16", "bfloat16"), "float32")}, set(dots)
  if not options.get("bidirectional"):
    state = model.initial_state(2)
    step_dots = _dots(lambda p, s, x: model.step(p, s, x)[1], params, state, xs[:, 0])
    assert set(step_dots) == {(("bfloat16", "bfloat16"), "float32")}, set(step_dots)


@pytest.mark.parametrize("kind,expected", [("rnn", True), ("lstm", True), ("gru", False)])
def test_default_gradient_path_is_the_documented_one(kind, expected):
  """README: "For the plain RNN and LSTM the gradient goes through a custom JVP" with the
  default options; the GRU gets autodiff of the plain scan."""
  model = drnn.stacked_rnn(kind, 3, (4, 4))
  params = model.init(jax.random.key(0))
  prims = _primitives(lambda p, x: model.apply(p, x)[0], params, jnp.ones((2, 5, 3)))
  assert ("custom_jvp_call" in prims) == expected, sorted(prims)


def test_remat_keeps_about_a_quarter_of_the_memory_or_less():
  """stacked_rnn's docstring: remat keeps "about a quarter of the activation memory or
  less" -- XLA's count of the compiled gradient's temporaries (T = 64: measured 0.23)."""
  xs = jax.random.normal(jax.random.key(0), (4, 64, 3))
  lengths = jnp.asarray([64, 30, 1, 50], jnp.int32)
  temp = {}
  for remat in (False, True):
    model = drnn.stacked_rnn("lstm", 3, (16, 16, 16), remat=remat)
    params = model.init(jax.random.key(1))
    f = jax.value_and_grad(lambda p: jnp.sum(jnp.sin(model.apply(p, xs, lengths)[0])))
    temp[remat] = jax.jit(f).lower(params).compile().memory_analysis().temp_size_in_bytes
  assert temp[True] <= 0.25 * temp[False], temp


# --------------------------------------------------------------------------------------
# The suite's own claims: a torch-only test skips only itself, and never under CI.

def test_missing_torch_skips_locally_and_fails_under_ci(monkeypatch):
  import sys

  import helpers
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
  monkeypatch.delenv("CI", raising=False)
  with pytest.raises(pytest.skip.Exception):
    helpers.import_torch()
  monkeypatch.setenv("CI", "true")
  with pytest.raises(pytest.fail.Exception, match="CI installs torch"):
    helpers.import_torch()


def test_no_test_module_skips_wholesale_on_an_optional_import():
  """`pytest.importorskip` at module level would skip a file's Flax and NumPy tests too
  (and silently under CI): torch comes through `helpers.import_torch` or the fixture."""
  import pathlib
  here = pathlib.Path(__file__)
  offenders = [p.name for p in here.parent.glob("test_*.py")
               if p != here and "importorskip(" in p.read_text()]
  assert not offenders, offenders


def test_fast_gradient_choice_rows_equal_their_committed_measurements():
  """fast_grad_choice.py's rows are what `benchmarks/fast_grad.py` measured and wrote."""
  import json
  import pathlib
  from deeprnn_jax._src import fast_grad_choice
  root = pathlib.Path(__file__).resolve().parents[1]
  sys.path.insert(0, str(root / "benchmarks"))
  import fast_grad
  checked = 0
  for backend, rows in fast_grad_choice.MEASURED.items():
    for where, path, speedups in rows:
      if path is None:
        continue
      data = json.loads((root / path).read_text())
      assert data["backend"] == backend
      widths = data["sizes"]["width"]
      measured = fast_grad.table(data["rows"], widths if isinstance(widths, int) else None)
      assert measured == speedups, (where, measured, speedups)
      checked += 1
  assert checked, "no committed measurement backs the table"


def test_hoist_choice_rows_equal_their_committed_measurements():
  """hoist_choice.py's rows are what `benchmarks/hoist.py` measured and wrote."""
  import json
  import pathlib
  from deeprnn_jax._src import hoist_choice
  root = pathlib.Path(__file__).resolve().parents[1]
  sys.path.insert(0, str(root / "benchmarks"))
  import hoist
  checked = 0
  for backend, rows in hoist_choice.MEASURED.items():
    for where, path, speedups in rows:
      data = json.loads((root / path).read_text())
      assert data["backend"] == backend
      assert hoist.table(data["rows"]) == speedups, (where, hoist.table(data["rows"]))
      assert data["provenance"]["cpu"] in where, (where, data["provenance"]["cpu"])
      checked += 1
  assert checked, "no committed measurement backs the table"


def test_fast_gradient_choice_reads_the_nearest_measured_width(monkeypatch):
  from deeprnn_jax._src import fast_grad_choice as choice
  monkeypatch.setitem(choice.MEASURED, "test", [
      ("a", None, {"gru": {256: 0.8}}),
      ("b", None, {"gru": {5: 1.6, 32: 1.2, 256: 0.9}, "rnn": {256: 1.1}})])
  assert choice.speedup("gru", "test", 256) == pytest.approx((0.8 * 0.9) ** 0.5)
  assert choice.speedup("gru", "test", 4) == 1.6 and choice.speedup("gru", "test", 12) == 1.6
  assert choice.speedup("gru", "test", 13) == 1.2 and choice.speedup("gru", "test", 90) == 1.2
  assert choice.speedup("gru", "test", 91) == pytest.approx((0.8 * 0.9) ** 0.5)
  assert choice.speedup("rnn", "test", 5) == 1.1 and choice.speedup("lstm", "test", 5) == 0
  assert choice.prefers_fast("gru", "test", 5) and not choice.prefers_fast("gru", "test", 512)
  assert not choice.prefers_fast("lstm", "test", 64)
