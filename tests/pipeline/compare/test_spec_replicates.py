"""Sweep specs: replicate s prepares with split seed s, per-seed option templates, tiers."""

import json

import pytest

from pipeline.compare.spec import read_spec
from pipeline.errors import GlossError


def _read(tmp_path, text: str) -> list:
    spec = tmp_path / "sweep.toml"
    spec.write_text(text)
    return read_spec(spec)


def _flag(run, flag: str) -> str | None:
    args = run.cli_args()
    return args[args.index(flag) + 1] if flag in args else None


METHODS = ('[[methods]]\nname = "ce"\nloss = "ce"\n'
           '[[methods]]\nname = "bertgcn"\nmethod = "bertgcn"\ntier = "gpu-full"\n'
           'options = { init-from = "out/runs/{dataset}-ce-seed{seed}", gcn-epochs = 2 }\n')


def test_replicate_s_uses_split_seed_s_and_fills_per_seed_options(tmp_path):
    runs = _read(tmp_path, 'datasets = ["R8"]\nseeds = [0, 1, 2]\ntier = "B"\n' + METHODS)
    assert [(r.method, _flag(r, "--seed"), _flag(r, "--split-seed")) for r in runs] == [
        ("ce", "0", "0"), ("ce", "1", "1"), ("ce", "2", "2"),
        ("bertgcn", "0", "0"), ("bertgcn", "1", "1"), ("bertgcn", "2", "2")]
    assert [_flag(r, "--init-from") for r in runs[3:]] == [f"out/runs/R8-ce-seed{s}" for s in range(3)]
    assert _flag(runs[3], "--gcn-epochs") == "2"
    assert [r.tier for r in runs] == ["B"] * 3 + ["gpu-full"] * 3


def test_a_fixed_split_seed_keeps_one_split(tmp_path):
    runs = _read(tmp_path, 'datasets = ["R8"]\nseeds = [0, 1]\nsplit_seed = 0\n'
                           '[[methods]]\nname = "ce"\noptions = { tag = "s{split_seed}-t{seed}" }\n')
    assert [(_flag(r, "--split-seed"), _flag(r, "--tag")) for r in runs] == [("0", "s0-t0"), ("0", "s0-t1")]
    assert runs[0].tier is None


@pytest.mark.parametrize(("text", "message"), [
    ('split_seed = "each"\n[[methods]]\nname = "ce"\n', "split_seed = 'each': expected \"seed\""),
    ('tier = "A"\n[[methods]]\nname = "ce"\n', "tier = 'A': expected one of B, adapter, gpu-full"),
    ('[[methods]]\nname = "ce"\ntier = "cpu"\n', "method 'ce': tier = 'cpu'"),
    ('[[methods]]\nname = "ce"\noptions = { init-from = "runs/{run}" }\n', "option init-from = 'runs/{run}'"),
    ('options = { split-seed = 1 }\n[[methods]]\nname = "ce"\n', "options: split-seed cannot be an option"),
    ('[[methods]]\nname = "ce"\noptions = { seed = 3 }\n', "method 'ce': options: seed cannot be an option"),
])
def test_spec_errors_are_one_line(tmp_path, text, message):
    with pytest.raises(GlossError, match=message.replace("(", r"\(").replace("{", r"\{")) as error:
        _read(tmp_path, 'datasets = ["R8"]\n' + text)
    assert "\n" not in str(error.value)


def _finished(run_dir, split_seed: int, tier: str | None = None) -> None:
    for stage in ("prepare", "evaluate"):
        (run_dir / stage).mkdir(parents=True, exist_ok=True)
    (run_dir / "prepare" / "manifest.json").write_text(json.dumps({"stage": "prepare", "config": {"seed": split_seed}}))
    (run_dir / "evaluate" / "manifest.json").write_text("{}")
    if tier:
        (run_dir / "compare-tier.txt").write_text(tier + "\n")


def test_a_finished_run_of_another_split_seed_or_tier_is_refused_before_anything_runs(tmp_path):
    from pipeline.compare.spec import RunSpec
    from pipeline.compare.sweep import run_sweep

    _finished(tmp_path / "runs" / "R8-ce-seed1", split_seed=0)
    runs = [RunSpec("R8", "ce", 0, split_seed=0), RunSpec("R8", "ce", 1, split_seed=1)]
    with pytest.raises(GlossError, match="R8-ce-seed1: finished with split seed 0, but the spec asks for 1"):
        run_sweep(runs, tmp_path, None, echo=lambda _: None)
    assert not (tmp_path / "runs" / "R8-ce-seed0").exists()  # nothing started
    _finished(tmp_path / "runs" / "R8-ce-seed1", split_seed=1, tier="adapter")
    with pytest.raises(GlossError, match="finished as tier adapter, but the spec asks for B"):
        run_sweep([RunSpec("R8", "ce", 1, split_seed=1, tier="B")], tmp_path, None, echo=lambda _: None)
    (tmp_path / "runs" / "R8-ce-seed1" / "compare-tier.txt").unlink()  # finished before tiers: gets the spec's
    lines = []
    finished, failures = run_sweep([RunSpec("R8", "ce", 1, split_seed=1, tier="B")], tmp_path, None,
                                   echo=lines.append)
    assert failures == [] and len(finished) == 1 and "recorded tier B" in lines[0]
    assert (tmp_path / "runs" / "R8-ce-seed1" / "compare-tier.txt").read_text() == "B\n"
