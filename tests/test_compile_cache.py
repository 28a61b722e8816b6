"""The trainers' --compile-cache setting: which directory, and JAX's settings restored."""

import os

import jax
import pytest

from examples.common import compile_cache


def test_setting_names_the_directory(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert compile_cache.resolve("auto") == str(tmp_path / "xdg" / "deeprnn_jax" / "xla")
  monkeypatch.delenv("XDG_CACHE_HOME")
  assert compile_cache.resolve("auto") == os.path.expanduser("~/.cache/deeprnn_jax/xla")
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))  # JAX's own wins
  assert compile_cache.resolve("auto") == str(tmp_path / "jax")
  assert compile_cache.resolve(str(tmp_path / "mine")) == str(tmp_path / "mine")
  for off in ("off", "OFF", "none", None):
    assert compile_cache.resolve(off) is None


@pytest.mark.parametrize("setting", ["dir", "off"])
def test_jax_settings_are_restored_after_a_run(tmp_path, setting):
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  before = {n: getattr(jax.config, n) for n in names}
  wanted = str(tmp_path / "cache") if setting == "dir" else "off"
  with compile_cache.enabled(wanted) as path:
    assert jax.config.jax_compilation_cache_dir == path
    assert (path is None) == (setting == "off")
    if path:
      assert os.path.isdir(path)
  assert {n: getattr(jax.config, n) for n in names} == before


def test_a_directory_that_cannot_be_made_warns_and_runs_without(tmp_path, capsys):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with compile_cache.enabled(str(blocker / "cache")) as path:
    assert path is None and jax.config.jax_compilation_cache_dir is None
  err = capsys.readouterr().err
  assert f"--compile-cache: cannot use {blocker / 'cache'}" in err and "without a cache" in err
