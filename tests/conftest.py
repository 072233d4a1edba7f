"""Shared fixtures: the benchmark data root (``GLOSS_DATA``, set by .ci/run), the shipped ``tiny`` dataset
(``tests/fixtures/tiny``, for stage tests that run without ``GLOSS_DATA``), tiny inline datasets, and a
private ``GLOSS_CACHE`` for the whole session (the suite never writes to ``~/.cache/gloss``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """``GLOSS_CACHE`` in a temporary folder for every test and the subprocesses they start."""
    previous = os.environ.get("GLOSS_CACHE")
    os.environ["GLOSS_CACHE"] = str(tmp_path_factory.mktemp("gloss-cache"))
    yield Path(os.environ["GLOSS_CACHE"])
    if previous is None:
        os.environ.pop("GLOSS_CACHE", None)
    else:
        os.environ["GLOSS_CACHE"] = previous


MISSING_DATA = "GLOSS_DATA does not point at the benchmark data"  # the skip reason the summary counts


def benchmark_root() -> Path | None:
    root = os.environ.get("GLOSS_DATA")
    if root and Path(root, "R8", "train.csv").is_file():
        return Path(root)
    return None


def require_benchmark_data() -> Path:
    """The benchmark data root. Without it the calling test is skipped, or fails under ``CI=true``: CI must
    run every test, so a data folder that went missing there is an error, not a quiet skip."""
    root = benchmark_root()
    if root is None:
        where = f"GLOSS_DATA={os.environ['GLOSS_DATA']}" if os.environ.get("GLOSS_DATA") else "GLOSS_DATA is unset"
        message = f"{MISSING_DATA} ({where}; it needs R8/train.csv)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return root


@pytest.fixture
def data_root() -> Path:
    """The benchmark data root; tests that need it are skipped when GLOSS_DATA is unset (fail under CI=true)."""
    return require_benchmark_data()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line at the end of the run saying how many tests were skipped for lack of the benchmark data."""
    skipped = [report for report in terminalreporter.stats.get("skipped", []) if MISSING_DATA in str(report.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"gloss: {len(skipped)} test(s) skipped because {MISSING_DATA}; set GLOSS_DATA to the folder "
            "holding R8/, mr/, ... (see the README's Data section) to run them", yellow=True, bold=True)


FIXTURES = Path(__file__).parent / "fixtures"
TINY = "tiny"  # tests/fixtures/tiny/{train,test}.csv: 4 classes, 44 train / 16 test hand-written sentences


@pytest.fixture(scope="session")
def tiny_root() -> Path:
    """The data root holding the shipped ``tiny`` dataset (``--dataset tiny --data-root <this>``)."""
    return FIXTURES


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return path


@pytest.fixture
def toy_root(tmp_path: Path) -> Path:
    """A data root holding 'toy': 3 classes, 30 train and 9 test documents."""
    train = [(f"document {i} about {label}", label) for label in ("a", "b", "c") for i in range(10)]
    test = [(f"test {i} about {label}", label) for label in ("a", "b", "c") for i in range(3)]
    write_csv(tmp_path / "toy" / "train.csv", train)
    write_csv(tmp_path / "toy" / "test.csv", test)
    return tmp_path


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """Every matplotlib figure saved during the test, as it was when saved: plot tests read what a figure
    draws (its artists' data), not only that a PNG exists."""
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures
