"""The depth study (studies/depth.py) on a tiny slice of the real data.

One study of two runs (a tanh RNN of width 4, depths 1 and 2, 1 epoch on 240 reviews;
the cheapest to compile: no gates, and unregularised, as dropout makes the train step
compile about twice as long) is trained once for the module; the tests read its file, rerun the command
and check that nothing is recomputed, and render the plots and the summary table.
The data comes from $TFDS_DATA_DIR as in test_imdb.py: without it these tests skip,
except under CI, where they fail.
"""

import json
import math

import jax
import numpy as np
import pytest

from examples.imdb import input_pipeline
from examples.imdb import train as trainer
from studies import depth as depth_study
from trainer_helpers import find_data_dir

GRID = ["--cells", "rnn", "--widths", "4", "--depths", "1,2", "--seeds", "0",
        "--regularised", "no", "--epochs", "1", "--limit-train", "300",
        "--limit-test", "100"]
PLOTS = ("test_accuracy", "gap", "seconds", "gradients")


def study_main(args):
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam computes float ** int32
    return depth_study.main(args)


@pytest.fixture(scope="module")
def data_dir():
  return find_data_dir()


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory):
  """The tiny study, run once: (its command line, the results path, the reviews it read)."""
  out = tmp_path_factory.mktemp("depth") / "depth.json"
  args = GRID + ["--data-dir", data_dir, "--out", str(out)]
  load_pool, pools = depth_study.load_pool, []

  def keeping(*a):  # the test of the splits reuses what the study read
    pools.append(load_pool(*a))
    return pools[-1]

  depth_study.load_pool = keeping
  try:
    assert study_main(args) == 0
  finally:
    depth_study.load_pool = load_pool
  return args, out, pools[0]


def rows(out):
  return json.loads(out.read_text())["rows"]


def test_rows_have_the_promised_fields(study):
  _, out, _ = study
  results = json.loads(out.read_text())
  assert results["settings"]["epochs"] == 1 and results["settings"]["limit_train"] == 300
  session = results["sessions"][0]
  assert session["cpu"] and session["jax"] == jax.__version__ and "git_commit" in session
  got = results["rows"]
  assert [(r["cell"], r["width"], r["regularised"], r["depth"], r["seed"]) for r in got] \
      == [("rnn", 4, False, 1, 0), ("rnn", 4, False, 2, 0)]
  for r in got:
    assert r["status"] == "ok" and r["session"] == 0
    assert (r["n_train"], r["n_val"], r["n_test"]) == (240, 60, 100)
    assert r["hidden"] == [4] * r["depth"] and not r["residual"] and r["dropout"] == 0
    for name in ("best_val_accuracy", "test_accuracy", "train_accuracy"):
      assert 0 <= r[name] <= 1
    assert r["best_epoch"] == 1 and len(r["history"]) == 1
    assert r["gap"] == pytest.approx(r["train_accuracy"] - r["best_val_accuracy"])
    assert r["seconds_per_epoch"] > 0 and r["compile_seconds"] > 0
    # an RNN layer of width 4: w_ih [input, 4], w_hh [4, 4], b [4]
    inputs = [32] + [4] * (r["depth"] - 1)
    assert r["rnn_params"] == sum(4 * (f + 4 + 1) for f in inputs)
    for when in ("init", "end"):
      state, params = r[f"grad_state_{when}"], r[f"grad_param_{when}"]
      assert len(state) == len(params) == r["depth"]
      assert all(math.isfinite(v) and v > 0 for v in state + params)
      assert r[f"grad_ratio_{when}"] == pytest.approx(state[0] / state[-1])
  assert got[0]["grad_ratio_init"] == 1.0  # one layer: the first is the top


def test_the_study_trains_what_the_trainer_would(study, data_dir):
  """The data of a seed is the trainer's own split, and the gradient probe differentiates
  the classifier's own loss (the probe reads the stack's last output, the classifier its
  top carry: the same numbers)."""
  _, out, pool = study  # undone from the trainer's split of seed 0
  s = json.loads(out.read_text())["settings"]
  ours = depth_study.split(pool, s["val_split"], 1)
  theirs = input_pipeline.load(data_dir, s["vocab"], s["maxlen"], s["val_split"], 1,
                               limit_train=300, limit_test=100)
  for a, b in zip(ours[:3], theirs[:3]):  # train, val, test
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
  row = rows(out)[1]
  point = {k: row[k] for k in depth_study.KEY}
  cfg = depth_study.run_config(point, s)
  data = depth_study.split(pool, s["val_split"], 0)
  nw, built = depth_study.network(cfg, len(data.train.labels))
  assert not built  # the study's, compiled once
  with jax.numpy_dtype_promotion("standard"):  # as the study ran: its compiled ops
    params = trainer.fresh_run(nw.net, nw.tx, point["seed"], nw.place)["state"]["params"]
  probed = np.arange(len(depth_study.probe_batch(data, s)["labels"]))
  # the study's compiled eval step, its batch filled up with rows of weight 0
  batch = input_pipeline.batch(data.train, probed, s["eval_batch_size"])
  loss = nw.eval_step[s["maxlen"]](params, batch)["loss"]
  assert row["probe_loss_init"] == pytest.approx(float(loss), rel=1e-5)


def test_a_rerun_skips_the_rows_done_and_runs_only_the_missing(study, monkeypatch, capsys):
  args, out, _ = study
  before = out.read_bytes()

  def must_not_run(*a, **k):
    raise AssertionError("recomputed a row that is in the file")

  monkeypatch.setattr(depth_study, "train_point", must_not_run)
  monkeypatch.setattr(depth_study, "load_pool", must_not_run)  # not even the data is read
  assert study_main(args) == 0
  assert "nothing to do: all 2 runs" in capsys.readouterr().out
  assert out.read_bytes() == before

  # one more depth: only that point runs (here a stand-in that copies the depth-2 row)
  ran = []

  def stand_in(point, data, s):
    ran.append(point)
    return {**rows(out)[1], **point}

  monkeypatch.setattr(depth_study, "train_point", stand_in)
  empty = input_pipeline.Reviews(*[np.zeros(0, np.int32)] * 3)
  monkeypatch.setattr(depth_study, "load_pool", lambda *a: depth_study.Pool(empty, empty, {}))
  monkeypatch.setattr(depth_study, "split", lambda *a: None)
  more = out.with_name("more.json")
  more.write_bytes(before)
  wider = [a if a != "1,2" else "1,2,3" for a in args[:-1]] + [str(more)]
  assert study_main(wider) == 0
  assert ran == [dict(cell="rnn", width=4, regularised=False, depth=3, seed=0)]
  assert [r["depth"] for r in rows(more)] == [1, 2, 3] and rows(more)[:2] == rows(out)


def test_other_settings_are_refused_not_mixed(study, capsys):
  args, out, _ = study
  before = out.read_bytes()
  assert study_main(args + ["--epochs", "2"]) == depth_study.EXIT_ERROR
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "epochs (file: 1, now: 2)" in err and "--out" in err
  assert out.read_bytes() == before


def test_plots_and_summary(study, capsys):
  args, out, _ = study
  for name in PLOTS:
    png = out.with_name(f"{name}.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png.unlink()
  assert study_main(["--out", str(out), "--plot-only", "--summary"]) == 0
  assert all(out.with_name(f"{name}.png").exists() for name in PLOTS)
  text = capsys.readouterr().out
  table = [line for line in text.splitlines() if line.startswith("|")]
  assert len(table) == 2 + 2  # header, separator, one line per depth
  assert table[0].count("|") == table[1].count("|") == table[2].count("|")
  assert table[2].startswith("| RNN | 4 | no | 1 | 148 | 1 | ")
  assert "240 train / 60 validation / 100 test reviews" in text and "dropout 0.2" in text


def test_bad_grid_flags_are_usage_errors(capsys):
  for flags in (["--cells", "lstm,foo"], ["--depths", "0"], ["--widths", "5,x"]):
    with pytest.raises(SystemExit) as e:
      depth_study.parse_args(flags)
    assert e.value.code == 2
  assert "expected" in capsys.readouterr().err


def test_regularised_runs_get_dropout_and_residual_connections():
  """The regularised configuration, and what --residual changes in the classifier: from
  layer 1 on each layer adds its input, and pooling "last" reads that sum."""
  s = depth_study.settings(depth_study.parse_args([]))
  point = dict(cell="lstm", width=5, regularised=True, depth=3, seed=2)
  cfg = depth_study.run_config(point, s)
  assert (cfg["dropout"], cfg["residual"], cfg["hidden"], cfg["seed"]) == (0.2, True, (5,) * 3, 2)
  plain = depth_study.run_config({**point, "regularised": False}, s)
  assert (plain["dropout"], plain["residual"]) == (0.0, False)
  assert "residual" in depth_study.configs.FROZEN
  from examples.imdb import main
  assert main.parse(["--residual"])[1]["residual"] is True
  tokens = np.arange(2, 26, dtype=np.int32).reshape(2, 12)
  lengths = np.array([12, 7], np.int32)
  # the study's shapes and promotion: the eager ops of init are compiled already
  nets = [depth_study.model.classifier(s["vocab"], s["embed"], "rnn", (4, 4), residual=r)
          for r in (False, True)]
  with jax.numpy_dtype_promotion("standard"):
    params = nets[0].init(jax.random.key(0))  # residual connections have no weights
    plain, residual = (np.asarray(jax.jit(n.apply)(params, tokens, lengths)) for n in nets)
  assert np.isfinite(residual).all() and not np.allclose(plain, residual)
