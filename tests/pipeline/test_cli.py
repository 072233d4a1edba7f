import subprocess
import sys

from click.testing import CliRunner

from pipeline import __version__
from pipeline.cli import main


def test_help_lists_stages_in_pipeline_order():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    names = ["prepare", "embed", "graph", "train", "tune", "evaluate", "compare", "inspect", "run"]
    positions = [result.output.index(f"  {name} ") for name in names]
    assert positions == sorted(positions)


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert __version__ in result.output


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from pipeline.cli import main; print(sorted(m for m in ('torch','pandas','transformers','numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, monkeypatch):
    from pipeline.stages import train as stage

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "run", interrupted)
    result = CliRunner().invoke(main, ["train", "--run-dir", str(tmp_path)])
    assert result.exit_code == 130
    assert "interrupted" in result.output and "--resume" in result.output and "Aborted" not in result.output


def test_a_config_key_no_command_knows_is_an_error_with_a_suggestion(toy_root, tmp_path):
    config = tmp_path / "gloss.toml"
    config.write_text("val_fractoin = 0.2\n")
    args = ["prepare", "--config", str(config), "--dataset", "toy", "--data-root", str(toy_root),
            "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "no command has an option 'val_fractoin'; did you mean 'val-fraction'?" in result.output
    assert not (tmp_path / "run").exists()
    config.write_text("lambda = 0.5\nval-fraction = 0.2\n[prepare]\nlimt = 10\n")  # a train key is fine here
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "[prepare] has no option 'limt'; did you mean 'limit'?" in result.output


def test_config_keys_use_the_option_names(tmp_path, monkeypatch):
    from pipeline.stages import run as stage

    seen = []
    monkeypatch.setattr(stage, "run", lambda config, *a, **k: seen.append(config) or (_ for _ in ()).throw(
        KeyboardInterrupt))
    config = tmp_path / "gloss.toml"
    config.write_text("[run]\nlambda = 0.5\ngraph = 'knn'\n")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 130, result.output
    assert seen[0].train.objective.lam == 0.5 and seen[0].train.objective.graph == "knn"
