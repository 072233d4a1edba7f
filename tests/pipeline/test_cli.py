import subprocess
import sys

from click.testing import CliRunner

from pipeline import __version__
from pipeline.cli import main


def test_help_lists_stages_in_pipeline_order():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    names = ["prepare", "embed", "graph", "train", "evaluate", "compare", "inspect", "run"]
    positions = [result.output.index(f"  {name} ") for name in names]
    assert positions == sorted(positions)


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert __version__ in result.output


def test_help_does_not_import_heavy_libraries():
    code = "import sys; from pipeline.cli import main; print(sorted(m for m in ('torch','pandas','transformers','numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
