"""The shared content-addressed cache and `gloss embed` reading through it."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline import cache
from pipeline.cli import main


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOSS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_suite_never_writes_to_the_home_cache():
    from pathlib import Path

    assert cache.cache_root() != Path.home() / ".cache" / "gloss"


def test_an_entry_is_found_by_its_parts_listed_and_cleared(empty_cache):
    calls = []

    def write(folder):
        calls.append(folder)
        (folder / "x.txt").write_text("data")

    folder, hit = cache.get_or_create("things", {"a": 1, "b": [2, 3]}, write)
    assert not hit and (folder / "x.txt").read_text() == "data" and folder.parent.parent == empty_cache
    again, hit = cache.get_or_create("things", {"b": [2, 3], "a": 1}, write)
    assert hit and again == folder and len(calls) == 1
    assert cache.lookup("things", {"a": 2}) is None
    [entry] = cache.entries()
    assert entry["kind"] == "things" and entry["parts"] == {"a": 1, "b": [2, 3]} and entry["bytes"] == 4
    assert cache.clear() == (1, 4) and cache.entries() == [] and not folder.exists()


def test_a_failed_write_leaves_no_entry(empty_cache):
    def fails(folder):
        (folder / "half.txt").write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.store("things", {"a": 1}, fails)
    assert cache.lookup("things", {"a": 1}) is None
    assert not [p for p in (empty_cache / "things").iterdir()]


def test_a_folder_is_hashed_once_per_version_of_its_files(empty_cache, tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"1234")
    first = cache.folder_hash(model)
    monkeypatch.setattr(cache, "sha256_file", lambda path: pytest.fail("read again"))
    assert cache.folder_hash(model) == first
    monkeypatch.undo()
    monkeypatch.setenv("GLOSS_CACHE", str(empty_cache))
    (model / "weights.bin").write_bytes(b"12345")
    assert cache.folder_hash(model) != first


def _prepare(toy_root, run):
    args = ["prepare", "--dataset", "toy", "--data-root", str(toy_root), "--run-dir", str(run)]
    assert CliRunner().invoke(main, args).exit_code == 0


def test_embed_reuses_cached_embeddings_in_another_run(toy_root, tmp_path, empty_cache, monkeypatch):
    from pipeline.stages import embed as stage

    first, second = tmp_path / "one", tmp_path / "two"
    _prepare(toy_root, first)
    _prepare(toy_root, second)
    embed = ["embed", "--max-length", "16", "--device", "cpu"]
    result = CliRunner().invoke(main, [*embed, "--run-dir", str(first)])
    assert result.exit_code == 0, result.output
    assert len(cache.entries("embeddings")) == 2  # train+val in one entry, test in another

    def no_encoder(config):
        raise AssertionError("the encoder was loaded although every split is cached")

    monkeypatch.setattr(stage, "load_encoder", no_encoder)
    result = CliRunner().invoke(main, [*embed, "--run-dir", str(second)])
    assert result.exit_code == 0, result.output
    assert "train, val, test read from the cache" in result.output
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(np.load(first / "embed" / f"embeddings_{split}.npy"),
                                      np.load(second / "embed" / f"embeddings_{split}.npy"))
    manifest = json.loads((second / "embed" / "manifest.json").read_text())
    assert manifest["summary"]["cached"] == ["train", "val", "test"]
    listed = CliRunner().invoke(main, ["cache", "list", "--kind", "embeddings"])
    assert listed.exit_code == 0 and listed.output.count("embeddings  ") == 2, listed.output
    assert "max_length=16" in listed.output
    cleared = CliRunner().invoke(main, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 3 entries" in cleared.output  # 2 entries + the encoder's hash


def test_embed_of_another_split_seed_encodes_nothing(toy_root, tmp_path, empty_cache, monkeypatch):
    from pipeline.encoder import EncoderConfig, embed_texts, load_encoder
    from pipeline.stages import embed as stage

    runs = {seed: tmp_path / f"split{seed}" for seed in (0, 1)}
    for seed, run in runs.items():
        args = ["prepare", "--dataset", "toy", "--data-root", str(toy_root), "--seed", str(seed), "--run-dir", str(run)]
        assert CliRunner().invoke(main, args).exit_code == 0
    embed = ["embed", "--max-length", "16", "--device", "cpu"]
    assert CliRunner().invoke(main, [*embed, "--run-dir", str(runs[0])]).exit_code == 0
    loads = []
    monkeypatch.setattr(stage, "load_encoder", lambda config: loads.append(config))
    result = CliRunner().invoke(main, [*embed, "--run-dir", str(runs[1])])
    assert result.exit_code == 0 and "train, val, test read from the cache" in result.output, result.output
    assert loads == [] and len(cache.entries("embeddings")) == 2
    model = load_encoder(EncoderConfig(max_length=16, device="cpu"))
    for split in ("train", "val"):
        texts = pd.read_csv(runs[1] / "prepare" / f"{split}.csv")["text"].tolist()
        assert texts != pd.read_csv(runs[0] / "prepare" / f"{split}.csv")["text"].tolist()
        np.testing.assert_allclose(np.load(runs[1] / "embed" / f"embeddings_{split}.npy"),
                                   embed_texts(model, texts, batch_size=8), atol=1e-5)
