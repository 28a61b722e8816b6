"""The docs' result figures are what benchmarks/claims.py renders from committed results.

Pure file reading: no JAX computation, so it runs in well under a few seconds.
"""

import copy
import json
import pathlib
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples" / "imdb"))
import claims  # noqa: E402
import measure_allocator  # noqa: E402
import report  # noqa: E402

GRID = ROOT / "benchmarks" / "results" / "cpu-2core.json"


@pytest.fixture
def tree(tmp_path):
  """A copy of the docs and committed results that a test may change."""
  for path in list(claims.BLOCKS) + ["examples/imdb/results", "benchmarks/results",
                                     claims.GRADIENT_FLOW]:
    src, dst = ROOT / path, tmp_path / path
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
      shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.png"))
    else:
      shutil.copy(src, dst)
  return tmp_path


def _edit(path, old, new):
  text = path.read_text()
  assert old in text, f"{old!r} not in {path}"
  path.write_text(text.replace(old, new, 1))


def _check(root, capsys):
  code = claims.main(["--check", "--root", str(root)])
  return code, capsys.readouterr().err


def test_committed_docs_match_their_results():
  assert claims.differences(ROOT) == [], (
      "a committed figure differs from its results file; run python benchmarks/claims.py")


def test_a_hand_edited_figure_is_caught_by_file_and_block(tree, capsys):
  assert _check(tree, capsys)[0] == 0
  metrics = json.loads((tree / "examples/imdb/results/strong/metrics.json").read_text())
  shown = f"**{metrics['test']['accuracy']:.4f}"  # the strong preset's test accuracy
  _edit(tree / "README.md", shown, "**0.9900")
  code, err = _check(tree, capsys)
  assert code == 1
  assert "README.md" in err and "'imdb-readme'" in err
  assert "RESULTS.md" not in err


def test_a_changed_result_file_is_caught_in_every_block_that_quotes_it(tree, capsys):
  metrics = tree / "examples/imdb/results/strong/metrics.json"
  data = json.loads(metrics.read_text())
  data["test"]["accuracy"] = 0.9
  metrics.write_text(json.dumps(data))
  code, err = _check(tree, capsys)
  assert code == 1
  for block in ("imdb-readme", "imdb-strong"):
    assert f"'{block}'" in err
  assert "'imdb-seed'" not in err


def test_a_changed_benchmark_json_is_caught_in_docs_and_report(tree, capsys):
  grid = tree / "benchmarks/results/cpu-2core.json"
  data = json.loads(grid.read_text())
  data["commit_info"]["dirty"] = False
  grid.write_text(json.dumps(data))
  code, err = _check(tree, capsys)
  assert code == 1
  for where in ("'bench-readme'", "'bench-targets'", "cpu-2core.md"):
    assert where in err


@pytest.mark.parametrize("damage", ["unknown", "unclosed", "missing"])
def test_broken_markers_fail_the_check(tree, capsys, damage):
  readme = tree / "README.md"
  if damage == "unknown":
    readme.write_text(readme.read_text() + "\n<!-- claims:nope -->\n<!-- /claims:nope -->\n")
  elif damage == "unclosed":
    _edit(readme, "<!-- /claims:imdb-readme -->", "")
  else:
    _edit(readme, "<!-- claims:imdb-readme -->", "")
    _edit(readme, "<!-- /claims:imdb-readme -->", "")
  code, err = _check(tree, capsys)
  assert code == 1 and "README.md" in err


def test_old_results_say_they_have_no_provenance_and_new_ones_name_it(tree):
  old = tree / "examples/imdb/results/strong_seed1/metrics.json"  # as before provenance
  old.write_text(json.dumps({k: v for k, v in json.loads(old.read_text()).items()
                             if k != "provenance"}))
  text = claims.imdb_readme(tree)
  assert "provenance not recorded" in text
  metrics = tree / "examples/imdb/results/seed_gru/metrics.json"
  data = json.loads(metrics.read_text())
  data["provenance"] = {"utc": "2027-01-02T03:04:05+00:00", "cpu": "Some CPU 9000",
                        "cpu_count": 8, "cpus_usable": 2, "jax": "0.10.2",
                        "git_commit": "0123456789abcdef", "git_clean": False}
  metrics.write_text(json.dumps(data))
  line = [l for l in claims.imdb_readme(tree).splitlines() if "seed_gru" in l][0]
  for fact in ("2027-01-02T03:04:05", "Some CPU 9000", "2 of 8", "0123456789",
               "uncommitted changes"):
    assert fact in line
  assert "provenance not recorded" not in line


def test_figures_come_from_the_files():
  """A few figures checked against the files by hand-free arithmetic."""
  seed = claims.imdb_seed(ROOT)
  log = (ROOT / "examples/imdb/results/seed_gru/train.log").read_text()
  compiled = log.split("compiled in ")[1].split("s")[0]
  assert f"| {float(compiled):.1f} |" in seed
  gru = json.loads((ROOT / "examples/imdb/results/seed_gru/metrics.json").read_text())
  assert f"{gru['best']['val_accuracy']:.4f} ({gru['best']['epoch']})" in seed


def test_allocator_block_says_unmeasured_until_its_run_is_committed(tree):
  (tree / claims.ALLOCATOR).unlink(missing_ok=True)
  assert "Not measured in a committed run" in claims.imdb_allocator(tree)
  run = {"out": "x", "wall_s": 100.0, "minflt": 1234567, "stime_s": 5.0, "utime_s": 200.0,
         "epoch_seconds": [50.0, 51.0], "test_accuracy": 0.88}
  (tree / claims.ALLOCATOR).write_text(json.dumps({
      "provenance": {"utc": "2027-01-01T00:00:00+00:00", "cpu": "C", "git_commit": "abc",
                     "git_clean": True, "cpu_count": 2, "cpus_usable": 2},
      "command": "measure_allocator.py --preset strong",
      "runs": {"without": dict(run, epoch_seconds=[70.0, 69.0]), "with": run},
      "same_metrics": True}))
  text = claims.imdb_allocator(tree)
  assert "| without | 70, 69 |" in text and "| with | 50, 51 |" in text
  assert "1,234,567" in text and "clean tree" in text and "Not measured" not in text


def test_compile_depth_page_is_rendered_once_its_json_exists(tree):
  assert "quotes none of its figures" in claims.compile_depth_sentence(tree)
  (tree / claims.COMPILE_DEPTH).write_text(json.dumps({
      "provenance": {"utc": "U", "cpu": "C", "git_commit": "abc", "git_clean": True},
      "device": "cpu", "repeats": 3, "depths": [2, 16], "batch": 64, "time": 100,
      "features": 32,
      "results": [{"cell": "lstm", "hidden": 256, "impl": "deeprnn_jax", "seconds": [1.0, 1.5]},
                  {"cell": "lstm", "hidden": 256, "impl": "flax", "seconds": [1.0, 4.0]}]}))
  assert "1.00 s at L=2, 1.50 s at L=16 (Flax 1.00 s to 4.00 s)" in (
      claims.compile_depth_sentence(tree))
  page = tree / "benchmarks/results/cpu-2core-compile-depth.md"
  assert page in claims.report_pages(tree)
  assert "| lstm | 256 | flax | 1.00 | 4.00 | 4.00 |" in claims.report_pages(tree)[page]()


def _split_sessions(tmp_path, same_session):
  """The committed grid as two files, peers in the second; `same_session`: copy the
  first file's session fields into the second."""
  data = json.loads(GRID.read_text())
  ours, peers = copy.deepcopy(data), copy.deepcopy(data)
  ours["benchmarks"] = [b for b in data["benchmarks"]
                        if b["extra_info"]["impl"].startswith("deeprnn_jax")]
  peers["benchmarks"] = [b for b in data["benchmarks"]
                         if not b["extra_info"]["impl"].startswith("deeprnn_jax")]
  if not same_session:
    peers["datetime"] = "2026-12-01T10:00:00+00:00"
    peers["commit_info"] = dict(peers["commit_info"], id="f" * 40, dirty=False)
  paths = [tmp_path / "a.json", tmp_path / "b.json"]
  for path, part in zip(paths, (ours, peers)):
    path.write_text(json.dumps(part))
  return paths


def test_report_says_back_to_back_only_for_one_session(tmp_path):
  one, _ = report.render([GRID], "one")
  assert "ran back to back there" in one and "| back to back |" in one
  merged, _ = report.render(_split_sessions(tmp_path, same_session=False), "merged")
  assert "back to back" not in merged.replace("0 of 30 points ran back to back", "")
  assert "| 2 sessions |" in merged
  for fact in ("tree with uncommitted changes", "clean tree", "ffffffffff"):
    assert fact in merged


def test_report_does_not_call_two_files_of_one_session_consecutive(tmp_path):
  text, _ = report.render(_split_sessions(tmp_path, same_session=True), "split")
  assert "| one session, not consecutive |" in text
  assert "| back to back |" not in text


def test_report_counts_and_flags_weak_timings():
  text, _ = report.render([GRID], "grid")
  rows = json.loads(GRID.read_text())["benchmarks"]
  few = sum(b["stats"]["rounds"] < report.FEW_ROUNDS for b in rows)
  assert f"{few} of {len(rows)} benchmarks had fewer than {report.FEW_ROUNDS}" in text
  widest = max((b["stats"]["max"] - b["stats"]["min"]) / b["stats"]["median"] for b in rows)
  assert f"largest {100 * widest:.0f}%" in text
  assert f"spread {100 * widest:.0f}%" in text  # the point's flag


def test_allocator_comparison_ignores_only_clocks():
  a = {"history": [{"loss": 1.0, "seconds": 5.0, "ms_per_step": 2.0}], "test": {"accuracy": 0.5},
       "test_last_epoch": {}, "best": {"epoch": 1}}
  b = copy.deepcopy(a)
  b["history"][0]["seconds"] = 9.0
  assert measure_allocator.same_metrics(a, b)
  b["history"][0]["loss"] = 1.0000001
  assert not measure_allocator.same_metrics(a, b)
