"""``gloss compare``: run a sweep's missing runs, aggregate every finished run, write tables and plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.compare.aggregate import (
    PAIRED_METRICS,
    aggregate,
    paired_difference,
    reference_differences,
    require_runs,
)
from pipeline.compare.published import published_rows
from pipeline.compare.report import write_report
from pipeline.errors import GlossError


def start_in_background(args: list[str], out_dir: str | Path) -> tuple[int, Path]:
    """Start ``gloss ARGS`` as a detached process writing to ``OUT/sweep.log``; returns (pid, log path)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "sweep.log"
    with open(log, "a") as handle:
        process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid, log


def run_compare(spec: str | None, run_dirs: list[str], out_dir: str | Path, data_root: str | None, pair: str,
                echo=print, reference: str | None = None) -> dict:
    """Run the spec's missing runs, read every finished run, write the report. The paired differences are
    ``reference - other`` for every other method when ``reference`` is given, else ``pair``
    (``METHOD:BASELINE``), each for :data:`~pipeline.compare.aggregate.PAIRED_METRICS`."""
    out_dir = Path(out_dir)
    if ":" not in pair:
        raise GlossError(f"--pair {pair}: expected METHOD:BASELINE, e.g. gloss+ce:ce")
    method, baseline = pair.split(":", 1)
    directories = [Path(d) for d in run_dirs]
    failures: list[str] = []
    if spec:
        from pipeline.compare.spec import read_spec
        from pipeline.compare.sweep import run_sweep

        runs = read_spec(spec)
        if reference and not run_dirs and reference not in {r.method for r in runs}:
            raise GlossError(f"--reference {reference}: {spec} has no method of that name")
        finished, failures = run_sweep(runs, out_dir, data_root, echo)
        directories += finished
    records = require_runs(list(dict.fromkeys(directories)))
    if not records:
        raise GlossError("compare: no finished runs to compare" + (f" ({len(failures)} failed)" if failures else ""))
    rows = aggregate(records)
    if reference:
        paired = reference_differences(records, reference)
    else:
        paired = [p for metric in PAIRED_METRICS for p in paired_difference(records, method, baseline, metric)]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    result = write_report(out_dir, rows, records, published_rows(datasets), paired)
    if failures:
        echo(f"compare: {len(failures)} run(s) failed: {', '.join(failures)}")
    return result
