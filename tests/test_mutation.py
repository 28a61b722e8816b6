"""The mutation check (`tests/mutation.py`): wrong changes to the library fail some test.

CI runs every mutant's snippet check (cheap: each must still be in the source) and a
quick part of the mutants; `python tests/mutation.py` runs them all (about 3 minutes on
2 cores; the README's reliability section has the table it printed).
"""

import pytest

import mutation

QUICK = ("dropout-scale", "fast-path-off", "clip-threshold")


@pytest.mark.parametrize("mutant", mutation.MUTANTS, ids=lambda m: m.name)
def test_every_mutant_still_applies(mutant, tmp_path):
  """A snippet the code no longer contains would make its mutant a silent no-op."""
  target = tmp_path / mutant.path
  target.parent.mkdir(parents=True)
  target.write_text((mutation.REPO / mutant.path).read_text())
  mutation._apply(mutant, tmp_path)
  assert target.read_text() != (mutation.REPO / mutant.path).read_text()


@pytest.mark.parametrize("name", QUICK)
def test_quick_mutants_are_caught(name):
  status, test, _ = mutation.run(mutation.BY_NAME[name])
  assert status == "caught", f"{name}: no test failed"
