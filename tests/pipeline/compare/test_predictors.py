"""The graph-predict report: every predictor's scores per row, graph predictors against the head and one method
against another, paired by (split seed, training seed), and its one-line errors."""

import json
import math
import shutil
from pathlib import Path

import pytest

from pipeline.compare.aggregate import RunRecord
from pipeline.compare.predictors import (
    PredictorRun,
    against_head,
    between_methods,
    paired_test,
    predictor_rows,
    read_roots,
    write_predictor_report,
)
from pipeline.errors import GlossError
from tests.pipeline.compare.test_replicates import fake_run

# df = 2, t = 2 sqrt(3) (differences 1, 2, 3 points): the two-sided p has the closed form 1 - t / sqrt(2 + t^2)
P_BY_HAND = 1 - 2 * math.sqrt(3) / math.sqrt(14)


def block(accuracy: float, k: int | None = None, alpha: float | None = None, **extra) -> dict:
    return {"accuracy": accuracy, "macro_f1": accuracy - 0.1, "k": k, "alpha": alpha, **extra}


def run_with(run_dir: Path, *, split_seed: int, seed: int, loss: str = "ce", predictor: dict | None = None,
             **predictors: dict) -> Path:
    """A finished run whose metrics.json holds ``predictors`` (keyword ``lpa_inductive`` -> ``lpa-inductive``)."""
    table = {key.replace("_", "-"): value for key, value in predictors.items()}
    return fake_run(run_dir, split_seed=split_seed, seed=seed, accuracy=table["head"]["accuracy"], loss=loss,
                    predictor=predictor, metrics={"predictors": table})


def test_rows_pool_runs_with_mean_std_and_each_runs_k_in_replicate_order(tmp_path):
    # directory order (a, b, c) is not replicate order: (2, 2), (0, 0), (1, 1)
    for name, s, accuracy, k, alpha in (("a", 2, 0.95, 5, 0.3), ("b", 0, 0.90, 20, 0.7), ("c", 1, 0.91, 10, 0.5)):
        run_with(tmp_path / "runs" / name, split_seed=s, seed=s, head=block(0.8), knn=block(accuracy, k),
                 mix_inductive=block(accuracy, k, alpha),
                 predictor={"predictor": "knn", "setting": "inductive"} if name == "c" else None)
    runs = read_roots([tmp_path])  # a sweep's output folder: its runs/
    rows = {row["predictor"]: row for row in predictor_rows(runs)}  # the headline predictor does not split rows
    assert list(rows) == ["head", "knn", "mix-inductive"]
    knn = rows["knn"]
    assert (knn["dataset"], knn["method"], knn["accuracy"]["n"]) == ("R8", "ce", 3)
    assert knn["accuracy"]["mean"] == pytest.approx(0.92)
    # deviations -0.02, -0.01, 0.03 -> squares 0.0014 / (n - 1)
    assert knn["accuracy"]["std"] == pytest.approx(math.sqrt(0.0007))
    assert knn["macro_f1"]["mean"] == pytest.approx(0.82)
    assert knn["replicates"] == [[0, 0], [1, 1], [2, 2]] and knn["k"] == [20, 10, 5]
    assert rows["mix-inductive"]["alpha"] == [0.7, 0.5, 0.3] and rows["head"]["k"] == [None, None, None]
    write_predictor_report([str(tmp_path)], tmp_path / "out", "python scripts/graph_predict_report.py x --out y")
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| R8 | ce | - | knn | 3 | 92.00 ± 2.65 | 82.00 ± 2.65 | 20/10/5 | - |" in table
    assert "| 20/10/5 | 0.7/0.5/0.3 |" in table and "the test labels only score" in table


def test_each_graph_predictor_against_the_head_by_hand(tmp_path):
    for s, (head, lpa) in enumerate([(0.80, 0.81), (0.81, 0.83), (0.82, 0.85)]):
        run_with(tmp_path / f"ce-{s}", split_seed=s, seed=0, head=block(head), lpa_transductive=block(lpa, 10))
    [comparison] = against_head(read_roots([tmp_path]))
    assert (comparison["predictor"], comparison["baseline"]) == ("lpa-transductive", "head")
    accuracy = comparison["accuracy"]
    assert accuracy["differences_points"] == pytest.approx([1.0, 2.0, 3.0]) and accuracy["mean_difference_points"] == pytest.approx(2)
    assert accuracy["t"] == pytest.approx(2 * math.sqrt(3)) and accuracy["p"] == pytest.approx(P_BY_HAND, rel=1e-6)
    assert accuracy["p_holm"] == pytest.approx(accuracy["p"])  # one dataset: nothing to correct
    assert comparison["macro_f1"]["mean_difference_points"] == pytest.approx(2)


def test_bank_with_test_documents_against_bank_pairs_by_split_and_training_seed_not_by_order(tmp_path):
    bank = {(0, 0): 0.80, (1, 1): 0.81, (2, 2): 0.82}
    with_test = {(2, 2): 0.85, (0, 0): 0.81, (1, 1): 0.83, (0, 1): 0.10}  # (0, 1) has no partner: left out
    for (s, seed), accuracy in bank.items():
        run_with(tmp_path / f"bank-{s}-{seed}", split_seed=s, seed=seed, loss="gloss+ce-bank",
                 head=block(0.5), knn=block(accuracy, 5))
    for (s, seed), accuracy in with_test.items():
        run_with(tmp_path / f"bank-test-{s}-{seed}", split_seed=s, seed=seed, loss="gloss+ce-bank-test",
                 head=block(0.5), knn=block(accuracy, 5))
    pairs = between_methods(read_roots([tmp_path]), "gloss+ce-bank-test", "gloss+ce-bank")
    assert [p["predictor"] for p in pairs] == ["head", "knn"]
    knn = pairs[1]["accuracy"]
    assert knn["replicates"] == [[0, 0], [1, 1], [2, 2]] and knn["n"] == 3
    assert knn["differences_points"] == pytest.approx([1.0, 2.0, 3.0]) and knn["p"] == pytest.approx(P_BY_HAND, rel=1e-6)
    assert pairs[0]["accuracy"]["no_test"] == "differences do not vary"  # the heads are equal


def _record_run(dataset: str, split_seed: int, head: float, knn: float) -> PredictorRun:
    record = RunRecord(f"{dataset}-{split_seed}", dataset, "ce", 0, head, head, None, None, None, None, None, [],
                       split_seed=split_seed)
    return PredictorRun(record, {"head": block(head), "knn": block(knn, 5)})


def test_holm_corrects_over_the_datasets_of_one_comparison():
    runs = [_record_run("R8", s, 0.8, 0.8 + d) for s, d in enumerate([0.01, 0.02, 0.03])]
    runs += [_record_run("mr", s, 0.7, 0.7 + d) for s, d in enumerate([0.01, 0.01, 0.04])]
    r8, mr = (c["accuracy"] for c in against_head(runs))
    smaller, larger = sorted([r8["p"], mr["p"]])
    expected = {smaller: 2 * smaller, larger: max(2 * smaller, larger)}
    assert r8["p_holm"] == pytest.approx(expected[r8["p"]]) and mr["p_holm"] == pytest.approx(expected[mr["p"]])


def test_no_test_with_fewer_than_three_pairs_or_constant_differences(tmp_path):
    two = {(0, 0): 0.9, (1, 0): 0.7}
    assert paired_test(two, {(0, 0): 0.8, (1, 0): 0.65}) == {
        "replicates": [[0, 0], [1, 0]], "differences_points": pytest.approx([10.0, 5.0]), "n": 2,
        "mean_difference_points": pytest.approx(7.5),
        "t": None, "p": None, "no_test": "n < 3"}
    constant = paired_test({(0, 0): 0.9, (1, 0): 0.8, (2, 0): 0.7}, {(0, 0): 0.8, (1, 0): 0.7, (2, 0): 0.6})
    assert constant["t"] is None and constant["no_test"] == "differences do not vary"
    assert paired_test({(0, 0): 0.9}, {(1, 0): 0.8})["mean_difference_points"] is None
    run_with(tmp_path / "one", split_seed=0, seed=0, head=block(0.8), knn=block(0.9, 5))
    write_predictor_report([str(tmp_path)], tmp_path / "out", "cmd")
    assert "| R8 | ce | - | knn | 1 | +10.00 | n/a | n/a (n < 3) | n/a |" in (tmp_path / "out" / "table.md").read_text()


def test_a_run_without_a_predictors_block_is_skipped_with_one_line_naming_it(tmp_path):
    run_with(tmp_path / "new", split_seed=0, seed=0, head=block(0.8), knn=block(0.9, 5))
    old = fake_run(tmp_path / "old", split_seed=1, seed=1, accuracy=0.8)  # evaluated before the graph predictors
    warnings = []
    runs = read_roots([tmp_path], warn=warnings.append)
    assert [Path(r.record.run_dir).name for r in runs] == ["new"]
    assert len(warnings) == 1 and str(old.resolve()) in warnings[0] and "no predictors block" in warnings[0]
    with pytest.raises(GlossError, match="no finished run with a predictors block under"):
        read_roots([old], warn=warnings.append)


def test_refused_roots_write_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(GlossError, match=f"run root {tmp_path / 'missing'}: no such folder"):
        write_predictor_report([str(tmp_path / "missing")], out, "cmd")
    (tmp_path / "empty" / "unfinished" / "prepare").mkdir(parents=True)
    with pytest.raises(GlossError, match=f"run root {tmp_path / 'empty'}: no finished run in it"):
        write_predictor_report([str(tmp_path / "empty")], out, "cmd")
    assert not out.exists()
    run_with(tmp_path / "runs" / "a", split_seed=0, seed=0, head=block(0.8))
    (tmp_path / "file").write_text("")
    with pytest.raises(GlossError, match="--out .*file: exists and is not a folder"):
        write_predictor_report([str(tmp_path / "runs")], tmp_path / "file", "cmd")
    results = write_predictor_report([str(tmp_path / "runs" / "a")], out, "cmd")  # a run itself is a root too
    assert json.loads((out / "results.json").read_text()) == results and results["runs"][0]["split_seed"] == 0


def test_a_run_reached_under_two_roots_counts_once_and_a_copy_is_refused(tmp_path):
    run = run_with(tmp_path / "a" / "ce-0", split_seed=0, seed=0, head=block(0.8), knn=block(0.9, 5))
    assert len(read_roots([tmp_path / "a", run])) == 1
    shutil.copytree(run, tmp_path / "b" / "ce-0")
    with pytest.raises(GlossError, match="ce-0 and .*ce-0 are the same run of R8 ce \\(split seed 0, seed 0\\)"):
        predictor_rows(read_roots([tmp_path / "a", tmp_path / "b"]))


def test_methods_limit_the_report_and_an_unknown_one_is_refused(tmp_path):
    for loss in ("ce", "gloss+ce"):
        run_with(tmp_path / loss, split_seed=0, seed=0, loss=loss, head=block(0.8), knn=block(0.9, 5))
    results = write_predictor_report([str(tmp_path)], tmp_path / "out", "cmd", methods=["gloss+ce"])
    assert {row["method"] for row in results["rows"]} == {"gloss+ce"} and len(results["runs"]) == 1
    with pytest.raises(GlossError, match="--methods gloss-ce: no finished run .*; did you mean 'gloss\\+ce'\\?"):
        write_predictor_report([str(tmp_path)], tmp_path / "out2", "cmd", methods=["gloss-ce"])
    assert not (tmp_path / "out2").exists()
