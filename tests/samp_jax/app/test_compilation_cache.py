"""The `samp-jax` command's persistent compilation cache: on by default in `<cache>/xla` (or
`$SAMP_JAX_XLA_CACHE`), so a command run again loads its executables; `off` turns it off, a
cache folder JAX already has is kept, and a folder that cannot be made is a warning."""

from __future__ import annotations

import collections
import json

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from samp_jax.app import cli
from samp_jax.core.assets import NoCacheFolderError
from samp_jax.serving import engine
from tests.faults.cli_files import write_model_and_reviews

NAMES = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
         "jax_persistent_cache_min_entry_size_bytes", "jax_compilation_cache_max_size")


@pytest.fixture
def no_cache_yet(monkeypatch):
    """JAX without a cache folder (as a user's process starts), restored afterwards."""
    saved = {name: getattr(jax.config, name) for name in NAMES}
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()
    monkeypatch.delenv(engine.CACHE_ENV, raising=False)
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def test_the_default_folder_is_used_and_kept_under_its_size(no_cache_yet, tmp_path):
    assert engine.default_compilation_cache(tmp_path / "xla") == (tmp_path / "xla").resolve()
    assert jax.config.jax_compilation_cache_dir == str((tmp_path / "xla").resolve())
    assert jax.config.jax_compilation_cache_max_size == engine.DEFAULT_CACHE_BYTES


def test_the_environment_names_another_folder_or_turns_it_off(no_cache_yet, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv(engine.CACHE_ENV, str(tmp_path / "mine"))
    assert engine.default_compilation_cache(tmp_path / "xla") == (tmp_path / "mine").resolve()
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv(engine.CACHE_ENV, "off")
    assert engine.default_compilation_cache(tmp_path / "xla") is None
    assert jax.config.jax_compilation_cache_dir is None and not (tmp_path / "xla").exists()


def test_a_folder_jax_already_caches_in_is_kept(no_cache_yet, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_own"))
    assert engine.default_compilation_cache(tmp_path / "xla") == tmp_path / "jax_own"
    assert not (tmp_path / "xla").exists()


def test_a_folder_that_cannot_be_made_is_a_warning(no_cache_yet, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.warns(UserWarning, match=r"no persistent compilation cache \(.*file.*\); every "
                                         r"executable is compiled"):
        assert engine.default_compilation_cache(tmp_path / "file" / "xla") is None
    assert jax.config.jax_compilation_cache_dir is None
    assert jax.config.jax_compilation_cache_max_size == -1


def test_no_folder_known_is_a_warning(no_cache_yet):
    """No $SAMP_JAX_CACHE and no home folder (a container's user without a passwd entry)."""
    with pytest.warns(UserWarning, match=r"no persistent compilation cache \(no folder for it"):
        assert engine.default_compilation_cache(None) is None
    assert jax.config.jax_compilation_cache_dir is None


def test_a_command_without_a_home_folder_runs_without_the_cache(no_cache_yet, tmp_path,
                                                                minilm_dir, monkeypatch, capsys):
    files = write_model_and_reviews(tmp_path / "files", minilm_dir, rows=3)

    def no_home():
        raise NoCacheFolderError("no home folder is known")
    monkeypatch.setattr(cli, "cache_dir", no_home)
    assert cli.main(["predict", "--model", str(files / "model"), "--data",
                     str(files / "data.csv"), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert "warning: no persistent compilation cache (no folder for it" in capsys.readouterr().err
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3


def test_an_unusable_environment_folder_is_one_warning_for_the_command_and_its_engines(
        no_cache_yet, tmp_path, minilm_dir, monkeypatch, capsys):
    """The command warns and runs without a cache; its engine, reading the same variable, does
    not try (and fail on) the folder again."""
    files = write_model_and_reviews(tmp_path / "files", minilm_dir, rows=3)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(engine.CACHE_ENV, str(tmp_path / "file"))
    assert cli.main(["predict", "--model", str(files / "model"), "--data",
                     str(files / "data.csv"), "--out", str(tmp_path / "p.jsonl")]) == 0
    err = capsys.readouterr().err
    assert err.count("no persistent compilation cache") == 1 and "File exists" in err, err
    assert jax.config.jax_compilation_cache_dir is None


@pytest.mark.slow
def test_predict_run_again_loads_its_executables_from_the_cache(no_cache_yet, tmp_path,
                                                                 minilm_dir, monkeypatch):
    files = write_model_and_reviews(tmp_path / "files", minilm_dir, rows=3)
    monkeypatch.setattr(cli, "cache_dir", lambda: tmp_path / "cache")
    events = collections.Counter()
    listener = lambda event, **kwargs: events.update([event])  # noqa: E731
    jax.monitoring.register_event_listener(listener)
    outputs = []
    try:
        for run in (1, 2):
            out = tmp_path / f"p{run}.jsonl"
            events.clear()
            assert cli.main(["predict", "--model", str(files / "model"), "--data",
                             str(files / "data.csv"), "--out", str(out)]) == 0
            outputs.append([json.loads(line) for line in out.read_text().splitlines()])
            if run == 1:
                assert events["/jax/compilation_cache/cache_hits"] == 0
                assert any((tmp_path / "cache" / "xla").iterdir())
    finally:
        jax.monitoring.unregister_event_listener(listener)
    assert events["/jax/compilation_cache/cache_hits"] >= 1  # the serving executable, loaded
    assert outputs[0] == outputs[1]


def test_the_bench_compiles_without_the_cache(no_cache_yet, monkeypatch, tmp_path):
    """Its rows record compile times."""
    monkeypatch.setattr(cli, "cache_dir", lambda: tmp_path)
    monkeypatch.setitem(cli.COMMANDS, "bench", lambda args: 0)
    assert cli.main(["bench", "--quick"]) == 0
    assert jax.config.jax_compilation_cache_dir is None and not (tmp_path / "xla").exists()


def test_a_folder_that_cannot_be_written_is_one_warning_not_one_per_compilation(
        no_cache_yet, tmp_path, monkeypatch):
    """A read-only copy of a cache: JAX's locked reads and writes would each fail and warn."""
    (tmp_path / "xla").mkdir()
    access = engine.os.access
    monkeypatch.setattr(engine.os, "access", lambda path, mode: (
        False if str(path) == str(tmp_path / "xla") else access(path, mode)))
    with pytest.warns(UserWarning, match=r"no persistent compilation cache \(.*xla cannot be "
                                         r"written\)"):
        assert engine.default_compilation_cache(tmp_path / "xla") is None
    assert jax.config.jax_compilation_cache_dir is None
