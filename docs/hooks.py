"""The docs site's build-time generation (mkdocs `hooks:`), from committed files only.

- Every `<!-- results:NAME -->` in a page becomes `docs/results.py`'s table NAME,
  rendered from the committed result JSON (so no figure in the docs is typed by hand).
- `<!-- include: PATH -->` becomes the file PATH of the repository (e.g. the generated
  and tested tests/BAD_INPUTS.md), without its first heading.
- The committed plots outside docs/ are published under figures/ with their repository
  paths (`figures/studies/results/depth/gap.png`), so pages show them without copies.
"""

import pathlib
import re
import sys

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import results  # noqa: E402

FIGURES = ("examples/imdb/results", "studies/results", "benchmarks/results")
INCLUDE = re.compile(r"^<!-- include: ([\w./-]+) -->$", re.M)  # alone on its line


def on_files(files, config):
  for folder in FIGURES:
    for png in sorted((ROOT / folder).rglob("*.png")):
      uri = f"figures/{png.relative_to(ROOT).as_posix()}"
      files.append(File.generated(config, uri, abs_src_path=str(png)))
  return files


def _include(match):
  path = ROOT / match.group(1)
  if not path.is_file():
    raise ValueError(f"include: no file {match.group(1)}")
  lines = path.read_text().splitlines()
  if lines and lines[0].startswith("# "):
    lines = lines[1:]
  return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
  return results.render_markers(INCLUDE.sub(_include, markdown), ROOT)
