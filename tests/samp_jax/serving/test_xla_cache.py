"""A persistent compilation cache entry cut short (a process killed while JAX wrote it) is
compiled anew and rewritten, without a warning, instead of failing every later read."""

from __future__ import annotations

import collections
import warnings

import jax
import jax.numpy as jnp
import pytest
from jax.experimental.compilation_cache import compilation_cache

from samp_jax.serving.engine import enable_compilation_cache

NAMES = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
         "jax_persistent_cache_min_entry_size_bytes", "jax_compilation_cache_max_size")


@pytest.fixture
def restore_cache_config():
    saved = {name: getattr(jax.config, name) for name in NAMES}
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.mark.parametrize("max_size", [-1, 1 << 30])  # without and with JAX's eviction
def test_a_cut_entry_is_compiled_anew_and_rewritten(tmp_path, restore_cache_config, max_size):
    x = jnp.arange(8.0)  # before the cache: its own program is not the entry looked at
    jax.config.update("jax_compilation_cache_max_size", max_size)
    enable_compilation_cache(tmp_path / "xla")

    def compile_once() -> collections.Counter:
        events = collections.Counter()
        listener = lambda event, **kwargs: events.update([event])  # noqa: E731
        jax.monitoring.register_event_listener(listener)
        try:
            jax.jit(lambda v: jnp.sin(v) * 3.0 + float(max_size)).lower(x).compile()
        finally:
            jax.monitoring.unregister_event_listener(listener)
        return events

    assert compile_once()["/jax/compilation_cache/cache_hits"] == 0
    (entry,) = [p for p in (tmp_path / "xla").iterdir()
                if p.name.startswith("jit__lambda") and p.name.endswith("-cache")]
    whole = entry.read_bytes()
    assert compile_once()["/jax/compilation_cache/cache_hits"] == 1
    entry.write_bytes(whole[:len(whole) // 2])  # as a kill -9 mid-write leaves it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # JAX's "Error reading persistent compilation cache"
        assert compile_once()["/jax/compilation_cache/cache_hits"] == 0
    from jax._src.compilation_cache import decompress_executable
    decompress_executable(entry.read_bytes())  # whole again (its compile time differs)
    assert compile_once()["/jax/compilation_cache/cache_hits"] == 1


def test_a_full_cache_is_one_warning_not_one_per_entry(tmp_path, restore_cache_config,
                                                       monkeypatch):
    """Every entry of a cache on a full disk fails: JAX warns once per executable; through
    `cache_errors_once` that is one line naming the folder and the reason."""
    import errno
    import os

    from jax._src import compilation_cache as jax_cache

    from samp_jax.serving.xla_cache import cache_errors_once
    folder = enable_compilation_cache(tmp_path / "xla")

    def full(cache_key, module_name, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                      str(folder / f"{module_name}-{cache_key}-cache"))
    monkeypatch.setattr(jax_cache, "put_executable_and_time", full)
    shown = []
    x = jnp.arange(8.0)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = cache_errors_once(lambda message, *args: shown.append(str(message)))
        for scale in (2.0, 3.0, 4.0):  # three executables, three failed writes
            jax.jit(lambda v, s=scale: jnp.cos(v) * s).lower(x).compile()
        warnings.warn("another warning")
    assert shown == [f"the compilation cache at {folder} could not be written (No space left "
                     "on device); compiling goes on without it", "another warning"]
