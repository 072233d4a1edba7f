"""Labels that differ only in form are warned about, an unseen val/test label gets a `did you mean`, and a
missing-value spelling (nan, None) is refused as a label unless --keep-nan-labels."""

import logging

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.labels import closest_label, suspect_pairs
from tests.conftest import write_csv


def test_suspect_pairs_number_case_and_truncation():
    pairs = suspect_pairs(["0", "0.0", "1", "ACQ", "acq", "studen", "student", "course"])
    assert [(a, b) for a, b, _ in pairs] == [("0", "0.0"), ("ACQ", "acq"), ("studen", "student")]


def test_no_suspect_pairs_among_the_benchmarks_labels():
    r52 = ["acq", "alum", "cpi", "cpu", "gas", "nat-gas", "lead", "lei", "tea", "tin", "ipi", "wpi", "1", "10"]
    assert suspect_pairs(r52) == []


@pytest.mark.parametrize("label, names, expected", [
    ("cours", ["course", "faculty", "student"], "course"),
    ("ACQ", ["acq", "earn"], "acq"),
    ("1.0", ["0", "1"], "1"),
])
def test_closest_label(label, names, expected):
    assert closest_label(label, names) == f"; did you mean '{expected}'?"


def _prepare(tmp_path, train, test, *args):
    write_csv(tmp_path / "d" / "train.csv", train)
    write_csv(tmp_path / "d" / "test.csv", test)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["prepare", "--dataset", "d", "--data-root", str(tmp_path), "--run-dir",
                                       str(run), *args])
    return result, run


TRAIN = [(f"doc {i}", label) for i in range(3) for label in ("course", "student", "0")]


def test_labels_differing_in_form_are_warned_about_in_one_line(tmp_path, caplog):
    train = TRAIN + [("doc x", "0.0"), ("doc y", "0.0"), ("doc z", "studen"), ("doc w", "studen")]
    with caplog.at_level(logging.WARNING, logger="gloss"):
        result, _ = _prepare(tmp_path, train, TRAIN)
    assert result.exit_code == 0, result.output
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "'0' / '0.0' (same number)" in warnings[0] and "'studen' / 'student'" in warnings[0]


@pytest.mark.parametrize("unseen, expected", [("cours", "course"), ("COURSE", "course"), ("0.0", "0")])
def test_an_unseen_test_label_gets_a_did_you_mean(tmp_path, unseen, expected):
    result, run = _prepare(tmp_path, TRAIN, TRAIN + [("doc t", unseen)])
    assert result.exit_code == 1
    assert f"label '{unseen}' in test does not occur in train; did you mean '{expected}'?" in result.output


@pytest.mark.parametrize("missing", ["nan", "NaN", "None"])
def test_a_nan_label_is_refused_unless_kept(tmp_path, missing):
    train = TRAIN + [("doc n", missing), ("doc m", missing)]
    result, run = _prepare(tmp_path, train, TRAIN)
    assert result.exit_code == 1
    assert f"train.csv: row 10: label '{missing}' reads as a missing value (2 such rows" in result.output
    assert "--keep-nan-labels" in result.output and not run.exists()
    result, run = _prepare(tmp_path, train, TRAIN, "--keep-nan-labels")
    assert result.exit_code == 0 and "4 classes" in result.output, result.output


def test_keep_nan_labels_enters_the_config_only_when_set():
    from pipeline.stages.prepare import PrepareConfig

    assert "keep_nan_labels" not in PrepareConfig("d", "r").stage_config()  # earlier runs keep their hashes
    assert PrepareConfig("d", "r", keep_nan_labels=True).stage_config()["keep_nan_labels"] is True
