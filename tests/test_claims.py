"""What the docs claim about the compiled program, checked on the program itself.

Outputs alone cannot show these: a bf16 model whose matmuls silently ran in float32, or a
default gradient that silently fell back to autodiff, gives the same numbers to within
the tolerances of every other test. So these tests read the jaxpr and XLA's memory
analysis.
"""

import pathlib
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


def _tool(name):
  """A measuring script of benchmarks/ (or benchmarks/tools/), imported by name."""
  import importlib
  root = pathlib.Path(__file__).resolve().parents[1]
  for folder in (root / "benchmarks" / "tools", root / "benchmarks"):
    if (folder / f"{name}.py").exists():
      sys.path.insert(0, str(folder))
      return importlib.import_module(name)
  raise FileNotFoundError(name)


def _as_points(speedups):
  """tuning.json's {kind: {"H" or "H,F": s}} as the tools write it: {kind: {H or (H, F): s}}."""
  point = lambda k: int(k) if "," not in k else tuple(int(n) for n in k.split(","))
  return {kind: {point(k): s for k, s in row.items()} for kind, row in speedups.items()}


@pytest.mark.parametrize("choice, tool", [("fast_grad", "fast_grad"), ("hoist", "hoist")])
def test_tuning_tables_equal_their_committed_measurements(choice, tool):
  """Each table of loops/tuning.json with a result file is what its tool measured and
  wrote there, on the CPU the table names."""
  import json
  from deeprnn_jax._src.loops import tuning
  root = pathlib.Path(__file__).resolve().parents[1]
  module = _tool(tool)
  checked = 0
  for table in tuning.tables()[choice]:
    if table["file"] is None:
      continue
    data = json.loads((root / table["file"]).read_text())
    assert data["backend"] == table["backend"]
    if choice == "hoist":
      measured = module.table(data["rows"])
      assert data["provenance"]["cpu"] in table["machine"], (table["machine"], data["provenance"])
    else:
      widths = data["sizes"]["width"]
      measured = module.table(data["rows"], widths if isinstance(widths, int) else None)
    assert measured == _as_points(table["speedups"]), (table["machine"], measured)
    checked += 1
  assert checked, "no committed measurement backs the table"


def test_fast_gradient_choice_reads_the_nearest_measured_width(monkeypatch):
  from deeprnn_jax._src.loops import tuning
  monkeypatch.setitem(tuning.tables(), "fast_grad", [
      {"backend": "test", "speedups": {"gru": {"256": 0.8}}},
      {"backend": "test", "speedups": {"gru": {"5": 1.6, "32": 1.2, "256": 0.9},
                                       "rnn": {"256": 1.1}}}])
  speedup = lambda kind, width: tuning.speedup("fast_grad", kind, "test", width)
  assert speedup("gru", 256) == pytest.approx((0.8 * 0.9) ** 0.5)
  assert speedup("gru", 4) == 1.6 and speedup("gru", 12) == 1.6
  assert speedup("gru", 13) == 1.2 and speedup("gru", 90) == 1.2
  assert speedup("gru", 91) == pytest.approx((0.8 * 0.9) ** 0.5)
  assert speedup("rnn", 5) == 1.1 and speedup("lstm", 5) == 0
  assert tuning.prefers_fast("gru", 5, "test") and not tuning.prefers_fast("gru", 512, "test")
  assert not tuning.prefers_fast("lstm", 64, "test")
