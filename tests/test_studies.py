"""The character-level depth study (studies/char_lm.py) and the overfitting study
(studies/overfit.py): their pieces against plain references, and each run on a tiny
configuration of the real data, then rerun to check that nothing finished is redone.
The data comes from $TFDS_DATA_DIR: without it the data tests skip, except under CI."""

import json
import math

import jax
import numpy as np
import pytest

from examples.common import imdb_text
from examples.lm import input_pipeline
from examples.lm import levels
from examples.lm import sampling
from studies import char_lm
from studies import char_lm_report as report
from studies import depth
from studies import overfit
from trainer_helpers import find_data_dir


def plain_char_ids(texts, vocab):
  """The character stream by a Python loop: each cleaned text, then <eos>."""
  out = []
  for text in imdb_text.clean(texts):
    out += [vocab.get(ch, levels.UNK) for ch in text] + [levels.EOS]
  return np.array(out, np.int32)


def test_char_level_equals_a_python_loop():
  texts = ["Ab<br />c!", "", "é ü 中文 — ok", "aaa\tb"]
  counts = levels.CHARS.counts(texts)
  assert counts["a"] == 3 and counts[" "] == 5 and "<" not in counts  # <br /> is a space
  assert list(counts)[:2] == ["A", "b"]  # first seen first
  vocab = input_pipeline.vocab_of(counts, 8)  # <eos>, <unk> and the 6 most frequent
  assert len(vocab) == 8 and set(vocab.values()) == set(range(8))
  ids = levels.CHARS.encode(texts, vocab)
  np.testing.assert_array_equal(ids, plain_char_ids(texts, vocab))
  np.testing.assert_array_equal(levels.CHARS.lengths(texts), [6, 1, 12, 6])
  assert ids.dtype == np.int32 and (ids == levels.EOS).sum() == len(texts)


def test_word_level_unchanged_by_the_strategy():
  texts = ["Don't STOP<br />it's 10/10", "the the end"]
  vocab = input_pipeline.build_vocab(input_pipeline.tokenize(texts), 5)
  assert vocab == input_pipeline.vocab_of(levels.WORDS.counts(texts), 5)
  np.testing.assert_array_equal(levels.WORDS.encode(texts, vocab),
                                input_pipeline.encode(input_pipeline.tokenize(texts), vocab))


def test_char_prompt_and_join():
  vocab = {"<eos>": 0, "<unk>": 1, "a": 2, " ": 3}
  np.testing.assert_array_equal(sampling.prompt_ids("a b", vocab, "char"), [0, 2, 3, 1])
  assert levels.CHARS.sep == "" and levels.WORDS.sep == " "


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_matched_width_is_the_nearest_count(cell):
  embed, target = 32, report.stack_params(cell, 1, 64, 32)
  for depth_ in (2, 5):
    width = char_lm.matched_width(cell, depth_, target, embed)
    gap = lambda w: abs(report.stack_params(cell, depth_, w, embed) - target)
    assert gap(width) <= min(gap(width - 1), gap(width + 1))
  # the LSTM's count in closed form: input and recurrent kernels and one bias per layer
  assert report.stack_params("lstm", 3, 10, 7) == 4 * 10 * (7 + 10 + 1) + 2 * 4 * 10 * 21


def test_fit_recovers_a_power_law_and_finds_the_crossover():
  n = np.geomspace(1e4, 1e6, 16)
  curve = lambda a, b, c: [{"tokens": float(t), "val_bits": a + b * t ** -c} for t in n]
  fit = report.fit_curve(curve(1.5, 40.0, 0.4))
  np.testing.assert_allclose(fit, (1.5, 40.0, 0.4), rtol=0.05)
  shallow = {"curve": curve(1.6, 20.0, 0.3), "val_bits": 1.6 + 20.0 * 1e6 ** -0.3}
  deep = {"curve": curve(1.3, 60.0, 0.3), "val_bits": 1.3 + 60.0 * 1e6 ** -0.3}
  # equal where 0.3 = 40 n^-0.3: n = (40 / 0.3)^(1 / 0.3), about 12 M
  cross = report.crossover(shallow, deep)
  assert cross.startswith("~") and abs(float(cross[1:].split("M")[0]) - 12) <= 1
  assert report.crossover(deep, {**shallow, "val_bits": 0.0}) == "now"


def test_legacy_depth_settings_mean_dropout_and_residual(tmp_path):
  old = {"settings": {"epochs": 3}, "rows": [], "sessions": []}
  depth.check_settings(old, {"epochs": 3, "regulariser": "dropout+residual"}, "f.json")
  with pytest.raises(depth.StudyError, match="regulariser"):
    depth.check_settings(old, {"epochs": 3, "regulariser": "dropout"}, "f.json")


@pytest.fixture(scope="module")
def data_dir():
  return find_data_dir()


CHAR_TINY = ["--cells", "lstm", "--depths", "1,4", "--setups", "equal_params", "--hidden",
             "24", "--tokens", "6000", "--spread-seeds", "", "--plain-too", "", "--no-peer"]
CHAR_TRAINER = ["--", "--val-reviews", "3", "--test-reviews", "3", "--vocab-text", "train",
                "--bptt", "20", "--batch-size", "8", "--chunks-per-call", "4", "--val-every",
                "8", "--embed", "8"]


def test_char_study_tiny_then_resumed(data_dir, tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
  results = tmp_path / "char.json"
  argv = CHAR_TINY + ["--results", str(results)] + CHAR_TRAINER
  assert char_lm.main(argv) == 0
  rows = json.loads(results.read_text())["rows"]
  # depth 1, and depth 4 with residual connections (--plain-too "": not without)
  assert [(r["depth"], r["residual"]) for r in rows] == [(1, False), (4, True)]
  for r in rows:
    assert r["level"] == "char" and r["cell"] == "lstm" and r["impl"] == "jax"
    assert math.isfinite(r["test_bits"]) and 0 < r["test_bits"] < math.log2(200) + 1
    # 6000 characters in 8 streams of 20 steps: 37 steps, validated at 8, 16, 24, 32, 37
    assert [p["tokens"] for p in r["curve"]] == [1280, 2560, 3840, 5120, 5992]
  assert rows[1]["stack_params"] == report.stack_params("lstm", 4, rows[1]["width"], 8)
  capsys.readouterr()
  assert char_lm.main(argv) == 0  # the same command again: nothing is trained
  assert "$ " not in capsys.readouterr().out
  assert json.loads(results.read_text())["rows"] == rows
  assert char_lm.main(argv[:argv.index("--")] + ["--table"] + CHAR_TRAINER) == 0
  table = capsys.readouterr().out
  assert "| jax | lstm | equal params | 4 x" in table and results.with_suffix(".png").exists()


def test_overfit_study_tiny_then_resumed(data_dir, tmp_path, capsys):
  argv = ["--fractions", "8", "--cells", "rnn", "--width", "4", "--depths", "1",
          "--seeds", "0", "--epochs", "1", "--limit-test", "100", "--out", str(tmp_path)]
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam computes float ** int32
    assert overfit.main(argv) == 0
    rows = json.loads((tmp_path / "train3125.json").read_text())["rows"]
    assert [(r["regularised"], r["residual"], r["dropout"]) for r in rows] == \
        [(False, False, 0.0), (True, False, 0.2)]  # dropout is the only change
    assert {r["n_train"] for r in rows} == {2500}
    for r in rows:
      assert r["gap"] == pytest.approx(r["train_accuracy"] - r["best_val_accuracy"])
    capsys.readouterr()
    assert overfit.main(argv) == 0
  assert "nothing to do" in capsys.readouterr().out
  assert (tmp_path / "gap.png").exists()
