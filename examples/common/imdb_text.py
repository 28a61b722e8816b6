"""IMDB reviews from tensorflow-datasets: where the data is, preparing it once, the tokenizer.

Reviews are read with `tfds.data_source` (random access to the prepared array_record
files, no TensorFlow). `prepare` downloads and prepares them once, which does need
TensorFlow: tfds reads the downloaded archive through tf.io.gfile. Tokens are lower-cased
words with HTML line breaks removed (`tokenize`), or the characters of the text with its
HTML line breaks as spaces (`clean`).

The data dir is `--data-dir`, else $TFDS_DATA_DIR, else `../shared/tensorflow_datasets`
beside this checkout when that holds a prepared imdb_reviews (where this project's
machines keep it), else tfds' default `~/tensorflow_datasets`, where the trainers
download and prepare it on a first run.
"""

import glob
import importlib.util
import json
import os
import pathlib
import re
import sys
import urllib.error
import urllib.request
from typing import List, Optional, Sequence
from unittest import mock

import numpy as np

NAME = "imdb_reviews"
# the checkout's parent: where ../shared/tensorflow_datasets is looked for
CHECKOUT = pathlib.Path(__file__).resolve().parents[2]
SHARED = CHECKOUT.parent / "shared" / "tensorflow_datasets"
_BREAK = re.compile(r"<br\s*/?>")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")  # don't, it's: one token each


class DataError(Exception):
  """The data dir is missing, empty or unreadable; the message says what to do."""


def _in_versions(data_dir: str, pattern: str) -> List[str]:
  """The files matching `pattern` in imdb_reviews' CONFIG/VERSION dirs: versions only,
  not the incomplete.* dir a killed prepare leaves behind."""
  return glob.glob(os.path.join(data_dir, NAME, "*", "[0-9]*", pattern))


def data_files(data_dir: str) -> List[str]:
  """Every file of the prepared imdb_reviews (what a cache of encoded reviews keys on)."""
  return _in_versions(data_dir, "*")


def is_prepared(data_dir: str) -> bool:
  """Whether `data_dir` holds imdb_reviews' dataset_info.json and *.array_record files."""
  return bool(_in_versions(data_dir, "dataset_info.json")
              and _in_versions(data_dir, "*.array_record*"))


def resolve_data_dir(data_dir: Optional[str]) -> str:
  """--data-dir, else $TFDS_DATA_DIR, else ../shared/tensorflow_datasets beside the
  checkout if it holds a prepared imdb_reviews, else tfds' default ~/tensorflow_datasets."""
  if data_dir:
    return os.path.expanduser(data_dir)
  if os.environ.get("TFDS_DATA_DIR"):
    return os.path.expanduser(os.environ["TFDS_DATA_DIR"])
  if is_prepared(str(SHARED)):
    return str(SHARED)
  return os.path.expanduser("~/tensorflow_datasets")


def _how_to_fix(data_dir):
  return (f"Pass --data-dir DIR or set TFDS_DATA_DIR=DIR, DIR being a tensorflow-datasets "
          f"directory holding a prepared {NAME} in array_record format (e.g. "
          f"../shared/tensorflow_datasets); the trainers download and prepare it in a DIR "
          f"that holds none, unless given --no-download (it needs a network, or "
          f"--download-url naming a copy of aclImdb_v1.tar.gz). Looked in: {data_dir}")


def check_data_dir(data_dir: str) -> None:
  """Raises DataError with what to pass or set unless `data_dir` holds imdb_reviews."""
  if not os.path.isdir(data_dir):
    raise DataError(f"the data dir does not exist. {_how_to_fix(data_dir)}")
  if not is_prepared(data_dir):
    raise DataError(f"no prepared {NAME} (dataset_info.json and *.array_record files) "
                    f"in the data dir. {_how_to_fix(data_dir)}")


def _check_can_prepare(data_dir: str) -> None:
  """Fails before any download if tfds could not prepare the data: it imports both
  packages (importlib_resources only declared by tfds for Python < 3.9), and it would
  keep a copy prepared in another file format (tfds.load's tfrecord) as it is."""
  for package in ("tensorflow", "importlib_resources"):
    if importlib.util.find_spec(package) is None:
      raise DataError(f"preparing {NAME} needs the {package} package, which is not "
                      f"installed: pip install -e '.[examples]'. {_how_to_fix(data_dir)}")
  if _in_versions(data_dir, "dataset_info.json"):
    raise DataError(f"the data dir holds an {NAME} prepared in a file format other than "
                    f"array_record (tfds.load's tfrecord, say): delete "
                    f"{os.path.join(data_dir, NAME)} to let the trainer prepare it again. "
                    f"{_how_to_fix(data_dir)}")


def _check_reachable(url: str, data_dir: str) -> None:
  """Fails fast when nothing answers at `url`: tfds would retry a refused connection for
  over 3 minutes (10 tries, doubling pauses), printing a warning for each."""
  if "://" not in url:  # a local file, which tfds copies
    if os.path.isfile(url):
      return
    reason = "no such file"
  else:
    try:
      urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30).close()
      return
    except urllib.error.HTTPError:
      return  # a server answered: tfds reports its HTTP status itself
    except (urllib.error.URLError, OSError) as e:  # refused, unreachable, no DNS, timeout
      reason = getattr(e, "reason", e)
  raise DataError(f"could not reach {url} to download {NAME} ({reason}). "
                  f"{_how_to_fix(data_dir)}")


def prepare(data_dir: str, url: Optional[str] = None) -> None:
  """Downloads aclImdb_v1.tar.gz (80 MB) and prepares imdb_reviews in array_record format
  in `data_dir`, with tfds' progress bars; the archive stays in `data_dir`/downloads.

  Args:
    data_dir: the tfds data dir (created if needed).
    url: where to get the archive (a mirror, or a local file); default: the builder's own
      URL (Stanford's), whose download tfds checks against its registered checksum.

  Raises:
    DataError: saying what to do, when the archive cannot be fetched or prepared.
  """
  _check_can_prepare(data_dir)
  import tensorflow_datasets as tfds  # imported here: it is slow to import
  # array_record: what data_source reads (tfds.data_source(download=True) writes tfrecord)
  builder = tfds.builder(NAME, data_dir=data_dir, file_format="array_record")
  # The builder takes no URL: it downloads its module's _DOWNLOAD_URL, read when it runs.
  # Swapping that constant meanwhile is smaller than a subclass, which tfds would register
  # as another dataset, prepared under another name.
  source = sys.modules[type(builder).__module__]
  url = url or source._DOWNLOAD_URL
  _check_reachable(url, data_dir)
  print(f"Downloading {NAME} from {url} and preparing it in {data_dir} (once: 80 MB, "
        f"a few minutes)", flush=True)
  try:
    with mock.patch.object(source, "_DOWNLOAD_URL", url):
      builder.download_and_prepare()
  except Exception as e:  # tfds raises many kinds (network, checksum, disk); one meaning here
    raise DataError(f"could not download and prepare {NAME} from {url} "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                    f"{_how_to_fix(data_dir)}") from None


def ensure(data_dir: str, download: bool, url: Optional[str] = None) -> None:
  """Prepares imdb_reviews in `data_dir` if it holds none and `download`; then raises
  DataError unless the data is there (before any slow read)."""
  if download and not is_prepared(data_dir):
    prepare(data_dir, url)
  check_data_dir(data_dir)


def load_split(data_dir: str, split: str, limit: int = 0):
  """Reads `split` ("train", "test" or "unsupervised") of the imdb_reviews prepared in
  `data_dir`: (texts, labels int32 [n]); the first `limit` reviews if `limit` > 0."""
  import tensorflow_datasets as tfds  # imported here: it is slow to import
  check_data_dir(data_dir)
  try:
    source = tfds.data_source(NAME, split=split, data_dir=data_dir, download=False)
    n = len(source) if not limit else min(limit, len(source))
    records = source.__getitems__(list(range(n)))
  except Exception as e:  # tfds raises many kinds for broken data; all mean the same here
    raise DataError(f"could not read the {split} split of {NAME} ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}). "
                    f"{_how_to_fix(data_dir)}") from None
  texts = [r["text"].decode("utf-8", "replace") for r in records]
  return texts, np.array([r["label"] for r in records], np.int32)


def num_reviews(data_dir: str, split: str, limit: int = 0) -> int:
  """How many reviews `load_split` reads, without reading them: the split's size in the
  prepared files' dataset_info.json (tfds' record of it), at most `limit` if > 0."""
  try:
    with open(max(_in_versions(data_dir, "dataset_info.json"))) as f:
      info = json.load(f)
    n = sum(int(k) for s in info["splits"] if s["name"] == split for k in s["shardLengths"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DataError(f"could not read the {split} split of {NAME} (its size in "
                    f"dataset_info.json: {type(e).__name__}: {e}). "
                    f"{_how_to_fix(data_dir)}") from None
  return min(limit, n) if limit else n


def tokenize(texts: Sequence[str]) -> List[List[str]]:
  """Lower-cased words of every text, HTML line breaks removed."""
  return [_WORD.findall(_BREAK.sub(" ", t.lower())) for t in texts]


def clean(texts: Sequence[str]) -> List[str]:
  """Every text as it was written (case and punctuation kept), HTML line breaks as
  spaces: what a character-level model reads."""
  return [_BREAK.sub(" ", t) for t in texts]
