from click.testing import CliRunner

from pipeline.cli import main
from pipeline.stages.prepare import PrepareConfig
from pipeline.stages.run import RunConfig
from pipeline.stages.train import TrainConfig


def test_default_run_dir_names_dataset_method_and_seed():
    config = RunConfig(prepare=PrepareConfig("R8", "data"), train=TrainConfig())
    assert config.default_run_dir().as_posix() == "runs/R8-gloss-ce-seed0"
    assert config.stages == ("prepare", "embed", "train", "evaluate")
    textgcn = RunConfig(prepare=PrepareConfig("mr", "data"), train=TrainConfig(method="textgcn"))
    assert textgcn.default_run_dir().as_posix() == "runs/mr-textgcn-seed0"
    assert textgcn.stages == ("prepare", "train", "evaluate")


def test_run_textgcn_runs_its_stages_into_the_default_directory(toy_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", "--dataset", "toy", "--data-root", str(toy_root), "--method", "textgcn", "--gcn-epochs", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "toy-textgcn-seed0"
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["evaluate", "prepare", "train"]
    assert "evaluate: textgcn: test accuracy" in result.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output.count("up to date") == 3, again.output
