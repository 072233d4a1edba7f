"""Every predictor of every run side by side: the graph predictors' test scores beside the head's, per dataset
and method, with paired t-tests over runs on the same (split seed, training seed).

``gloss evaluate`` scores every predictor of a run and writes them to ``RUN/evaluate/metrics.json`` as its
``predictors`` block (``head``, ``knn``, ``lpa-transductive``, ``lpa-inductive``, ``mix-transductive``,
``mix-inductive``; each with test ``accuracy`` and ``macro_f1`` and the ``k`` and ``alpha`` chosen on the
validation split). This module reads those blocks from folders of finished runs and reports:

* per (dataset, method, predictor key): test accuracy and macro-F1 as mean ± sample std (ddof=1) and n, and
  the validation-chosen k and alpha of each run;
* each graph predictor against the head of the same runs (``PREDICTOR - head``), per dataset and method;
* one method against another for every predictor key (by default ``gloss+ce-bank-test - gloss+ce-bank``: the
  G-Loss bank graph with and without the unlabelled test documents).

Rows are the rows of ``gloss compare`` (:func:`pipeline.compare.aggregate.aggregate`: dataset, method, tier and
the settings that tell runs apart), but by the run's method alone: its headline predictor (``gloss evaluate
--predictor``) does not matter here, since every predictor is read. Paired differences are in percentage
points, tested by :func:`pipeline.compare.aggregate.paired_t_test` (the benchmark table's test): with fewer
than three pairs, or differences that do not vary, there is no test (``p`` is ``None``). ``p_holm`` is Holm-corrected over the datasets of one comparison.

A finished run whose evaluation has no ``predictors`` block (evaluated before the graph predictors existed) is
skipped with a one-line warning that names it; a run root that does not exist or holds no finished run is a
one-line error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic
from pipeline.compare.aggregate import (
    RunRecord,
    aggregate,
    holm,
    mean_std,
    paired_t_test,
    predictor_label,
    read_run,
)
from pipeline.compare.report import plus_minus
from pipeline.compare.sweep import is_finished
from pipeline.errors import GlossError, did_you_mean
from pipeline.manifest import load_manifest

HEAD = "head"
SCORES = ("accuracy", "macro_f1")  # the test metrics of every predictor
UNLABELED_PAIR = ("gloss+ce-bank-test", "gloss+ce-bank")  # (method, baseline): the bank graph with / without test
METRICS_FILE = "metrics.json"
RUNS_FOLDER = "runs"  # where a `gloss compare` sweep keeps its runs under its output folder
NOTE = ("k (neighbours) and alpha (the mixing weight of `mix`) were chosen for each run on its validation split "
        "(by validation macro-F1); the test labels only score. Means ± sample standard deviation (ddof=1) over "
        "runs; n counts runs (split seed × training seed); k and alpha are listed per run in the order of "
        "(split seed, training seed). Differences are in percentage points, paired over runs on the same split "
        "seed and training seed (paired t-test; p (Holm): Holm's correction over the datasets of one comparison).")


@dataclass
class PredictorRun:
    """One finished run: its identity (dataset, method, seeds, tier; the method without a headline-predictor
    suffix) and its ``predictors`` block (predictor key -> accuracy, macro_f1, k, alpha, ...)."""

    record: RunRecord
    predictors: dict[str, dict[str, Any]]

    def value(self, key: str, name: str) -> Any:
        return (self.predictors.get(key) or {}).get(name)


def find_runs(root: str | Path) -> list[Path]:
    """The finished runs of a run root: the root itself when it is a run, else its sub-folders that are (a
    sweep's output folder: those of its ``runs/``), sorted by name. A root that does not exist, or holds no
    finished run, is a one-line error."""
    root = Path(root)
    if not root.is_dir():
        raise GlossError(f"run root {root}: no such folder")
    if is_finished(root):
        return [root]
    folder = root / RUNS_FOLDER if (root / RUNS_FOLDER).is_dir() else root
    runs = sorted(d for d in folder.iterdir() if d.is_dir() and is_finished(d))
    if not runs:
        raise GlossError(f"run root {root}: no finished run in it (a run is a folder with "
                         f"prepare/, train/ and evaluate/manifest.json)")
    return runs


def predictors_block(run_dir: Path) -> dict[str, dict[str, Any]] | None:
    """The ``predictors`` block of ``RUN/evaluate/metrics.json``; ``None`` when the evaluation has none."""
    evaluated = load_manifest(run_dir, "evaluate")
    if METRICS_FILE not in evaluated.data.get("outputs", {}):
        return None
    metrics = json.loads(evaluated.output(METRICS_FILE).read_text())
    return metrics.get("predictors") or None


def read_predictor_run(run_dir: Path) -> PredictorRun | None:
    """A finished run with its predictors; ``None`` when its evaluation has no ``predictors`` block."""
    predictors = predictors_block(run_dir)
    if predictors is None:
        return None
    record = read_run(run_dir)
    headline = predictor_label(load_manifest(run_dir, "evaluate").summary)
    record.method = record.method.removesuffix(headline) if headline else record.method
    return PredictorRun(record, predictors)


def read_roots(roots: Iterable[str | Path], warn: Callable[[str], None] = print) -> list[PredictorRun]:
    """Every finished run under ``roots`` with a predictors block (a run reached twice counts once); runs
    without one are skipped with one warning line naming them."""
    roots = list(roots)
    found = {}  # a run reached twice (two roots, a link) counts once, under the path first given
    for run_dir in (d for root in roots for d in find_runs(root)):
        found.setdefault(run_dir.resolve(), run_dir)
    run_dirs = list(found.values())
    read = {run_dir: read_predictor_run(run_dir) for run_dir in run_dirs}
    runs = [run for run in read.values() if run is not None]
    skipped = [run_dir for run_dir, run in read.items() if run is None]
    if skipped:
        warn(f"warning: skipped {len(skipped)} finished run(s) whose evaluate/metrics.json has no predictors "
             f"block (rerun `gloss evaluate` on them): {', '.join(str(d) for d in skipped)}")
    if not runs:
        raise GlossError(f"no finished run with a predictors block under {', '.join(str(r) for r in roots)}")
    return runs


def _keys(members: list[PredictorRun]) -> list[str]:
    """The predictor keys of a group's runs, in the order ``gloss evaluate`` writes them."""
    return list(dict.fromkeys(key for run in members for key in run.predictors))


def _by_replicate(members: list[PredictorRun]) -> list[PredictorRun]:
    return sorted(members, key=lambda run: run.record.replicate)


def _groups(runs: list[PredictorRun]) -> list[tuple[dict, list[PredictorRun]]]:
    """``gloss compare``'s rows (without their metric cells) with their runs, in first-seen order."""
    by_dir = {run.record.run_dir: run for run in runs}
    groups = []
    for row in aggregate([run.record for run in runs]):
        identity = {k: row[k] for k in ("dataset", "method", "tier", "label", "variant", "config_hash")}
        members = [by_dir[d] for d in row["runs"]]
        _check_replicates(identity["label"], members)
        groups.append((identity, members))
    return groups


def _check_replicates(label: str, members: list[PredictorRun]) -> None:
    """One run per (split seed, training seed) in a row: a copy of a run under a second root would count twice."""
    seen: dict[tuple, str] = {}
    for run in members:
        if run.record.replicate in seen:
            split_seed, seed = run.record.replicate
            raise GlossError(f"{seen[run.record.replicate]} and {run.record.run_dir} are the same run of "
                             f"{run.record.dataset} {label} (split seed {split_seed}, seed {seed}): give one of them")
        seen[run.record.replicate] = run.record.run_dir


def predictor_rows(runs: list[PredictorRun]) -> list[dict]:
    """Per row of runs and predictor key: test accuracy and macro-F1 (mean, std, n), and per run, in the order
    of (split seed, training seed), the replicate and the validation-chosen k and alpha."""
    rows = []
    for identity, members in _groups(runs):
        for key in _keys(members):
            having = [run for run in _by_replicate(members) if key in run.predictors]
            row = {**identity, "predictor": key, "setting": having[0].value(key, "setting"),
                   "replicates": [list(run.record.replicate) for run in having],
                   "k": [run.value(key, "k") for run in having], "alpha": [run.value(key, "alpha") for run in having],
                   "runs": [run.record.run_dir for run in having]}
            row |= {metric: mean_std([run.value(key, metric) for run in having]) for metric in SCORES}
            agreement = [run.value(key, "test_agreement_with_knn") for run in having]
            if any(a is not None for a in agreement):  # inductive lpa: how often it predicts what knn does
                row["test_agreement_with_knn"] = mean_std(agreement)
            rows.append(row)
    return rows


def paired_test(ours: dict[tuple, float], theirs: dict[tuple, float]) -> dict:
    """:func:`~pipeline.compare.aggregate.paired_t_test` with the differences in percentage points
    (``differences_points``, ``mean_difference_points``)."""
    result = paired_t_test(ours, theirs)
    differences = result.pop("differences")
    mean = result.pop("mean_difference")
    return {"replicates": result.pop("replicates"), "differences_points": [100.0 * d for d in differences],
            "n": result.pop("n"), "mean_difference_points": None if mean is None else 100.0 * mean, **result}


def _scores(members: list[PredictorRun], key: str, metric: str) -> dict[tuple, float]:
    """(split seed, training seed) -> the runs' ``metric`` of predictor ``key``, where they have it."""
    scores = {run.record.replicate: run.value(key, metric) for run in members}
    return {replicate: value for replicate, value in scores.items() if value is not None and not math.isnan(value)}


def _compare(ours: list[PredictorRun], our_key: str, theirs: list[PredictorRun], their_key: str) -> dict:
    return {metric: paired_test(_scores(ours, our_key, metric), _scores(theirs, their_key, metric))
            for metric in SCORES}


def against_head(runs: list[PredictorRun]) -> list[dict]:
    """Each graph predictor against the head of the same runs, per row (dataset, method, ...) and metric."""
    out = []
    for identity, members in _groups(runs):
        for key in _keys(members):
            if key != HEAD and any(HEAD in run.predictors for run in members):
                out.append({**identity, "predictor": key, "baseline": HEAD,
                            **_compare(members, key, members, HEAD)})
    return _with_holm(out, family=("method", "variant", "tier", "predictor"))


def between_methods(runs: list[PredictorRun], method: str, baseline: str) -> list[dict]:
    """``method - baseline`` for every predictor key both have, per dataset, pairing rows on the same data
    protocol (every ``data.*`` setting equal but the split seed)."""
    groups = _groups(runs)
    out = []
    for ours_id, ours in groups:
        if ours_id["method"] != method:
            continue
        for theirs_id, theirs in groups:
            if (theirs_id["method"], theirs_id["dataset"]) != (baseline, ours_id["dataset"]) \
                    or theirs[0].record.data_hash != ours[0].record.data_hash:
                continue
            for key in (k for k in _keys(ours) if k in _keys(theirs)):
                out.append({"dataset": ours_id["dataset"], "method": ours_id["label"], "method_tier": ours_id["tier"],
                            "baseline": theirs_id["label"], "baseline_tier": theirs_id["tier"], "predictor": key,
                            **_compare(ours, key, theirs, key)})
    return _with_holm(out, family=("method", "method_tier", "baseline", "baseline_tier", "predictor"))


def _with_holm(comparisons: list[dict], family: tuple[str, ...]) -> list[dict]:
    """``p_holm`` beside each metric's ``p``: Holm's correction over the datasets of one comparison."""
    for key in dict.fromkeys(tuple(c[f] for f in family) for c in comparisons):
        members = [c for c in comparisons if tuple(c[f] for f in family) == key]
        for metric in SCORES:
            corrected = holm([c[metric]["p"] for c in members])
            for comparison, p_holm in zip(members, corrected, strict=True):
                comparison[metric]["p_holm"] = p_holm
    return comparisons


# -- Markdown --------------------------------------------------------------------------------------------------

def _per_run(values: list) -> str:
    return "/".join("-" if v is None else f"{v:g}" for v in values) if any(v is not None for v in values) else "-"


def _tested(result: dict) -> str:
    """``+1.23 | 3.46 | 0.074 | 0.15`` (difference, t, p, p Holm) or ``n/a (n < 3)`` in place of t and p."""
    mean = result["mean_difference_points"]
    difference = "n/a" if mean is None else f"{mean:+.2f}"
    if result["t"] is None:
        return f"{difference} | n/a | n/a ({result['no_test']}) | n/a"
    holm_p = result.get("p_holm")
    return f"{difference} | {result['t']:.2f} | {result['p']:.3g} | {'n/a' if holm_p is None else f'{holm_p:.3g}'}"


PAIRED_HEADER = ("| n | accuracy Δ (points) | t | p | p (Holm) | macro-F1 Δ (points) | t | p | p (Holm) |",
                 "|---|---|---|---|---|---|---|---|---|")


def _comparison_line(prefix: str, comparison: dict) -> str:
    n = comparison["accuracy"]["n"]
    return f"| {prefix} | {n} | " + " | ".join(_tested(comparison[m]) for m in SCORES) + " |"


def markdown_report(roots: list[str], command: str, rows: list[dict], head: list[dict], methods: list[dict],
                    pair: tuple[str, str]) -> str:
    lines = ["# Graph predictors against the head", "",
             f"Run roots: {', '.join(f'`{r}`' for r in roots)}  ", f"Command: `{command}`", "", NOTE, "",
             "## Test scores per predictor", "",
             "| dataset | method | tier | predictor | n | test accuracy (%) | test macro-F1 (%) | k per run "
             "| alpha per run | agrees with knn (%) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        agreement = row.get("test_agreement_with_knn")
        lines.append(f"| {row['dataset']} | {row['label']} | {row['tier'] or '-'} | {row['predictor']} | "
                     f"{row['accuracy']['n']} | {plus_minus(row['accuracy'])} | {plus_minus(row['macro_f1'])} | {_per_run(row['k'])} | "
                     f"{_per_run(row['alpha'])} | {plus_minus(agreement) if agreement else ''} |")
    lines += ["", "Agrees with knn: the share of test documents on which inductive lpa predicts what the kNN vote "
                  "predicts (100: the two coincide on this data).", "",
              "## Graph predictor − head (the same runs)", "",
              "| dataset | method | tier | predictor " + PAIRED_HEADER[0], "|---|---|---|---" + PAIRED_HEADER[1]]
    lines += [_comparison_line(f"{c['dataset']} | {c['label']} | {c['tier'] or '-'} | {c['predictor']}", c)
              for c in head] or ["", "(no run has both the head and a graph predictor)"]
    lines += ["", f"## {pair[0]} − {pair[1]} (every predictor)", ""]
    if methods:
        lines += ["| dataset | comparison | predictor " + PAIRED_HEADER[0], "|---|---|---" + PAIRED_HEADER[1]]
        lines += [_comparison_line(f"{c['dataset']} | {_tiered(c, 'method')} − {_tiered(c, 'baseline')} | "
                                   f"{c['predictor']}", c) for c in methods]
    else:
        lines.append(f"No dataset has finished runs of both {pair[0]} and {pair[1]} on the same data.")
    return "\n".join(lines) + "\n"


def _tiered(comparison: dict, side: str) -> str:
    tier = comparison[f"{side}_tier"]
    return f"{comparison[side]} · {tier}" if tier else comparison[side]


def only_methods(runs: list[PredictorRun], methods: list[str] | None) -> list[PredictorRun]:
    """The runs of ``methods`` (all when ``None``); a method with no run is a one-line error."""
    if methods is None:
        return runs
    found = list(dict.fromkeys(run.record.method for run in runs))
    for method in methods:
        if method not in found:
            raise GlossError(f"--methods {method}: no finished run of that method with a predictors block"
                             f"{did_you_mean(method, found)} (methods: {', '.join(found)})")
    return [run for run in runs if run.record.method in methods]


def write_predictor_report(roots: list[str], out_dir: str | Path, command: str,
                           pair: tuple[str, str] = UNLABELED_PAIR, methods: list[str] | None = None,
                           warn: Callable[[str], None] = print) -> dict:
    """Read every finished run under ``roots`` (of ``methods`` only, when given) and write ``OUT/table.md`` and
    ``OUT/results.json``; returns what ``results.json`` holds. Nothing is written when an input is refused."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise GlossError(f"--out {out_dir}: exists and is not a folder")
    runs = only_methods(read_roots(roots, warn), methods)
    rows, head, methods = predictor_rows(runs), against_head(runs), between_methods(runs, *pair)
    results = {"roots": [str(r) for r in roots], "command": command, "note": NOTE, "rows": rows,
               "against_head": head, "between_methods": {"method": pair[0], "baseline": pair[1], "pairs": methods},
               "runs": [{"run_dir": r.record.run_dir, "dataset": r.record.dataset, "method": r.record.method,
                         "tier": r.record.tier, "split_seed": r.record.split_seed, "seed": r.record.seed}
                        for r in runs]}
    write_text_atomic(out_dir / "table.md", markdown_report([str(r) for r in roots], command, rows, head, methods,
                                                            pair))
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1, allow_nan=False) + "\n")
    return results
