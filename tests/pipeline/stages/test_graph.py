from click.testing import CliRunner

from pipeline.cli import main


def _gloss(*args):
    return CliRunner().invoke(main, list(args))


def _stops(result, message):
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output


def test_k_not_below_the_document_count_stops_before_anything_is_written(toy_root, tmp_path):
    run = tmp_path / "run"
    assert _gloss("prepare", "--dataset", "toy", "--data-root", str(toy_root), "--run-dir", str(run)).exit_code == 0
    # toy: 27 train + 3 val + 9 test = 39 documents; the check comes before the embed manifest is read.
    _stops(_gloss("graph", "--run-dir", str(run), "--k", "39"), "--k 39: ")
    assert "has 39 documents (train + val + test), so at most 38 neighbours each" in _gloss(
        "graph", "--run-dir", str(run), "--k", "39").output
    assert not (run / "graph").exists()
    _stops(_gloss("graph", "--run-dir", str(run), "--k", "-1"), "--k")
