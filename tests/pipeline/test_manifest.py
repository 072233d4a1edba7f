import json

import pytest

from pipeline.errors import GlossError
from pipeline.manifest import load_manifest, run_stage


def _body(calls):
    def body(ctx):
        calls.append(1)
        ctx.output("a.txt", rows=1).write_text("hello\n")
        return {"n": 1}

    return body


def test_stage_writes_manifest_and_skips_when_unchanged(tmp_path):
    calls = []
    m = run_stage(tmp_path, "s", {"x": 1}, _body(calls), echo=lambda _: None)
    assert m.data["outputs"]["a.txt"]["rows"] == 1
    assert len(m.data["outputs"]["a.txt"]["sha256"]) == 64
    messages = []
    run_stage(tmp_path, "s", {"x": 1}, _body(calls), echo=messages.append)
    assert len(calls) == 1 and "skipped" in messages[0]
    run_stage(tmp_path, "s", {"x": 2}, _body(calls), echo=lambda _: None)
    assert len(calls) == 2
    run_stage(tmp_path, "s", {"x": 2}, _body(calls), force=True, echo=lambda _: None)
    assert len(calls) == 3


def test_interrupted_stage_leaves_nothing(tmp_path):
    def body(ctx):
        ctx.output("half.txt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stage(tmp_path, "s", {}, body, echo=lambda _: None)
    assert not (tmp_path / "s").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".s.")] == []


def test_upstream_change_invalidates(tmp_path):
    up = run_stage(tmp_path, "up", {"v": 1}, _body([]), echo=lambda _: None)
    calls = []
    run_stage(tmp_path, "down", {}, _body(calls), upstream={"up": up}, echo=lambda _: None)
    up2 = run_stage(tmp_path, "up", {"v": 2}, _body([]), echo=lambda _: None)
    run_stage(tmp_path, "down", {}, _body(calls), upstream={"up": up2}, echo=lambda _: None)
    assert len(calls) == 2
    inputs = json.loads((tmp_path / "down" / "manifest.json").read_text())["inputs"]
    assert inputs["up"]["sha256"] == up2.sha256()


def test_missing_upstream_names_the_command(tmp_path):
    with pytest.raises(GlossError, match=r"run `gloss prepare --run-dir"):
        load_manifest(tmp_path, "prepare")
