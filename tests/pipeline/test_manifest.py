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


def test_replacing_a_changed_stage_names_the_changed_dotted_keys(tmp_path):
    run_stage(tmp_path, "s", {"loop": {"lr": 1.0, "epochs": 3}, "x": 1}, _body([]), echo=lambda _: None)
    messages = []
    run_stage(tmp_path, "s", {"loop": {"lr": 2.0, "epochs": 3}, "x": 1}, _body([]), echo=messages.append)
    assert messages[0] == f"s: config changed since {tmp_path / 's'} was written: loop.lr (1.0 -> 2.0); replacing it"
    assert len(messages) == 2 and "wrote" in messages[1]


def test_a_failed_stage_leaves_no_empty_scratch_but_keeps_checkpoints(tmp_path):
    def fails(ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "s", {}, fails, echo=lambda _: None)
    assert not (tmp_path / ".scratch").exists()

    def fails_after_a_checkpoint(ctx):
        (ctx.scratch_dir / "last.pt").write_text("state")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "s", {}, fails_after_a_checkpoint, echo=lambda _: None)
    assert (tmp_path / ".scratch" / "s" / "last.pt").read_text() == "state"
    run_stage(tmp_path, "s", {}, _body([]), echo=lambda _: None)
    assert not (tmp_path / ".scratch").exists()


def test_train_manifests_of_replicates_share_a_config_hash(tmp_path):
    first = run_stage(tmp_path / "a", "train", {"loop": {"seed": 0, "lr": 1.0}}, _body([]), echo=lambda _: None)
    second = run_stage(tmp_path / "b", "train", {"loop": {"seed": 1, "lr": 1.0}}, _body([]), echo=lambda _: None)
    other = run_stage(tmp_path / "c", "train", {"loop": {"seed": 0, "lr": 2.0}}, _body([]), echo=lambda _: None)
    assert first.data["config_hash"] == second.data["config_hash"] != other.data["config_hash"]
