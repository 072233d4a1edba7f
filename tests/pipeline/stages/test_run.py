from click.testing import CliRunner

from pipeline.cli import main
from pipeline.stages.prepare import PrepareConfig
from pipeline.stages.run import RunConfig
from pipeline.stages.train import TrainConfig


def test_default_run_dir_names_dataset_method_seed_and_config_hash():
    config = RunConfig(prepare=PrepareConfig("R8", "data"), train=TrainConfig())
    assert config.default_run_dir().as_posix() == f"runs/R8-gloss-ce-seed0-{config.config_hash()[:8]}"
    assert config.stages == ("prepare", "embed", "train", "evaluate")
    textgcn = RunConfig(prepare=PrepareConfig("mr", "data"), train=TrainConfig(method="textgcn"))
    assert textgcn.default_run_dir().as_posix().startswith("runs/mr-textgcn-seed0-")
    assert textgcn.stages == ("prepare", "train", "evaluate")


def test_two_settings_never_share_a_default_run_dir():
    def run_dir(lam=0.8, seed=0, limit=None):
        train = TrainConfig()
        train.objective.lam, train.loop.seed = lam, seed
        return RunConfig(prepare=PrepareConfig("R8", "/data", limit=limit), train=train).default_run_dir()

    assert run_dir(0.5) != run_dir(0.8) and run_dir(limit=300) != run_dir()
    assert run_dir(seed=1).name.replace("seed1", "seed0") == run_dir().name  # the seed is in the name once
    moved = RunConfig(prepare=PrepareConfig("R8", "/elsewhere"), train=TrainConfig())
    assert moved.default_run_dir() == run_dir()  # where the data lives is no part of the setting


def test_embed_runs_only_when_training_reads_it():
    def stages(**objective):
        train = TrainConfig()
        for key, value in objective.items():
            setattr(train.objective, key, value)
        return RunConfig(prepare=PrepareConfig("R8", "data"), train=train).stages

    assert "embed" in stages(loss="gloss+ce", sigma="sqrt") and "embed" in stages(loss="gloss", sigma="dicm")
    for objective in ({"loss": "ce"}, {"loss": "scl+ce"}, {"loss": "gloss+ce", "sigma": "batch-sqrt"},
                      {"loss": "gloss", "sigma": 0.5}):
        assert stages(**objective) == ("prepare", "train", "evaluate"), objective


def test_run_textgcn_runs_its_stages_into_the_default_directory(toy_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", "--dataset", "toy", "--data-root", str(toy_root), "--method", "textgcn", "--gcn-epochs", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [run] = (tmp_path / "runs").glob("toy-textgcn-seed0-*")
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["evaluate", "prepare", "train"]
    assert "evaluate: textgcn: test accuracy" in result.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and again.output.count("up to date") == 3, again.output
