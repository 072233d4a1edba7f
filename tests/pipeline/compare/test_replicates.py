"""Replicates pool over training seed, split seed and a per-seed --init-from; the paired test pairs runs on
the same (split seed, training seed); rows carry every predictor's scores, convergence and the tier."""

import json
from pathlib import Path

import pytest

from pipeline.compare.aggregate import aggregate, epochs_to_share, holm, paired_difference, read_run
from pipeline.manifest import run_stage

HISTORY = [{"epoch": 1, "val_macro_f1": 0.50, "seconds": 10.0}, {"epoch": 2, "val_macro_f1": 0.90, "seconds": 12.0},
           {"epoch": 3, "val_macro_f1": 0.951, "seconds": 11.0}, {"epoch": 4, "val_macro_f1": 0.96, "seconds": 9.0}]


def fake_run(run_dir: Path, *, split_seed: int, seed: int, accuracy: float, loss: str = "ce", lr: float = 2e-5,
             init_from: Path | None = None, tier: str | None = None, history=HISTORY,
             predictor: dict | None = None, metrics: dict | None = None) -> Path:
    """A finished run's three manifests, as `gloss run` writes them, without training anything; ``metrics``:
    the evaluation's ``metrics.json``, when given."""
    quiet = {"force": True, "echo": lambda _: None}
    prepared = run_stage(run_dir, "prepare", {"dataset": "R8", "data_root": "/data", "val_fraction": 0.1,
                                              "seed": split_seed, "limit": None}, lambda ctx: {}, **quiet)
    method = "bertgcn" if init_from else "finetune"
    config = {"method": method, "loop": {"seed": seed, "lr": lr}}
    config |= {"gcn": {"init_from": str(init_from.resolve())}} if init_from else {"objective": {"loss": loss}}

    def train(ctx):
        ctx.output("history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        return {"method": method, "loss": None if init_from else loss, "best_epoch": len(history),
                "seconds_per_epoch": 10.5, "has_head": True}

    trained = run_stage(run_dir, "train", config, train, upstream={"prepare": prepared}, **quiet)
    summary = {"headline": {"accuracy": accuracy, "macro_f1": accuracy - 0.1, "source": "head"},
               "head": {"accuracy": accuracy, "macro_f1": accuracy - 0.1},
               "linear_probe": {"accuracy": accuracy + 0.01, "macro_f1": accuracy - 0.05},
               "label_propagation": {"accuracy": accuracy - 0.02, "macro_f1": accuracy - 0.2}, **(predictor or {})}
    def evaluate(ctx):
        if metrics is not None:
            ctx.output("metrics.json").write_text(json.dumps(metrics))
        return summary

    run_stage(run_dir, "evaluate", {}, evaluate, upstream={"prepare": prepared, "train": trained}, **quiet)
    if tier:
        (run_dir / "compare-tier.txt").write_text(tier + "\n")
    (run_dir / "compare-name.txt").write_text(("bertgcn" if init_from else loss) + "\n")
    return run_dir


def test_three_runs_on_split_seeds_0_1_2_are_one_row_of_n_3(tmp_path):
    records = [read_run(fake_run(tmp_path / f"ce-{s}", split_seed=s, seed=s, accuracy=0.90 + 0.01 * s))
               for s in range(3)]
    [row] = aggregate(records)
    assert row["accuracy"]["n"] == 3 and row["accuracy"]["mean"] == pytest.approx(0.91)
    assert row["split_seeds"] == [0, 1, 2] and row["replicates"] == [[0, 0], [1, 1], [2, 2]]
    assert row["label"] == "ce" and row["variant"] == ""
    # any other setting still makes a row of its own
    other = read_run(fake_run(tmp_path / "ce-lr", split_seed=0, seed=0, accuracy=0.5, lr=1e-5))
    assert [r["accuracy"]["n"] for r in aggregate([*records, other])] == [3, 1]


def test_bertgcn_from_each_seeds_own_ce_run_pools(tmp_path):
    ce = [fake_run(tmp_path / f"ce-{s}", split_seed=s, seed=s, accuracy=0.9) for s in range(3)]
    bertgcn = [read_run(fake_run(tmp_path / f"bertgcn-{s}", split_seed=s, seed=s, accuracy=0.95, init_from=ce[s]))
               for s in range(3)]
    [row] = aggregate(bertgcn)
    assert row["method"] == "bertgcn" and row["accuracy"]["n"] == 3
    # started from a CE run of another setting: another row
    other_ce = fake_run(tmp_path / "ce-lr", split_seed=0, seed=0, accuracy=0.9, lr=1e-5)
    odd = read_run(fake_run(tmp_path / "bertgcn-odd", split_seed=0, seed=0, accuracy=0.95, init_from=other_ce))
    assert [r["accuracy"]["n"] for r in aggregate([*bertgcn, odd])] == [3, 1]


def test_paired_test_pairs_runs_on_the_same_split_and_training_seed(tmp_path):
    records = [read_run(fake_run(tmp_path / f"ce-{s}", split_seed=s, seed=0, accuracy=a))
               for s, a in enumerate([0.80, 0.81, 0.82])]
    records += [read_run(fake_run(tmp_path / f"gl-{s}", split_seed=s, seed=0, accuracy=a, loss="gloss+ce"))
                for s, a in enumerate([0.81, 0.83, 0.85])]
    records.append(read_run(fake_run(tmp_path / "gl-extra", split_seed=0, seed=1, accuracy=0.0, loss="gloss+ce")))
    [result] = paired_difference(records, "gloss+ce", "ce")
    # (0, 1) has no ce partner: left out; the others differ by 0.01, 0.02, 0.03
    assert result["replicates"] == [[0, 0], [1, 0], [2, 0]] and result["n"] == 3
    assert result["mean_difference"] == pytest.approx(0.02)


def test_rows_carry_head_probe_propagation_and_convergence(tmp_path):
    [row] = aggregate([read_run(fake_run(tmp_path / "ce", split_seed=0, seed=0, accuracy=0.9))])
    expected = {"head_accuracy": 0.9, "head_macro_f1": 0.8, "probe_accuracy": 0.91, "probe_macro_f1": 0.85,
                "propagation_accuracy": 0.88, "propagation_macro_f1": 0.7,
                "epochs_to_99": 3, "seconds_to_99": 33.0}  # 0.951 >= 0.99 * 0.96 = 0.9504 at epoch 3, after 10 + 12 + 11 s
    assert {k: row[k]["mean"] for k in expected} == pytest.approx(expected)


def test_graph_predictor_columns_come_from_the_validation_chosen_predictors(tmp_path):
    chosen = {"predictors": {"lpa-transductive": {"accuracy": 0.93, "macro_f1": 0.81},
                             "lpa-inductive": {"accuracy": 0.5, "macro_f1": 0.5},
                             "knn": {"accuracy": 0.92, "macro_f1": 0.82},
                             "mix-transductive": {"accuracy": 0.5, "macro_f1": 0.5},
                             "mix-inductive": {"accuracy": 0.94, "macro_f1": 0.83}}}
    [row] = aggregate([read_run(fake_run(tmp_path / "ce", split_seed=0, seed=0, accuracy=0.9, predictor=chosen))])
    expected = {"propagation_accuracy": 0.93, "propagation_macro_f1": 0.81, "knn_accuracy": 0.92,
                "knn_macro_f1": 0.82, "mix_accuracy": 0.94, "mix_macro_f1": 0.83}
    assert {k: row[k]["mean"] for k in expected} == pytest.approx(expected)
    [old] = aggregate([read_run(fake_run(tmp_path / "old", split_seed=0, seed=0, accuracy=0.9))])
    assert old["propagation_accuracy"]["mean"] == pytest.approx(0.88) and old["knn_accuracy"]["n"] == 0


def test_epochs_to_share_by_hand():
    assert epochs_to_share(HISTORY) == (3, 33.0)
    assert epochs_to_share(HISTORY, share=0.5) == (1, 10.0)
    assert epochs_to_share([{"val_macro_f1": None}, {"val_macro_f1": 0.4}]) == (2, None)
    assert epochs_to_share([{"val_macro_silhouette": 0.3}]) == (None, None)


def test_head_and_graph_headlines_never_pool(tmp_path):
    graph = {"predictor": "lpa", "setting": "inductive"}
    records = [read_run(fake_run(tmp_path / f"ce-{s}", split_seed=s, seed=s, accuracy=0.9,
                                 predictor=graph if s == 2 else None)) for s in range(3)]
    rows = aggregate(records)
    assert [(r["label"], r["accuracy"]["n"]) for r in rows] == [("ce", 2), ("ce [lpa]", 1)]


def test_tiers_never_pool(tmp_path):
    records = [read_run(fake_run(tmp_path / f"ce-{s}", split_seed=s, seed=s, accuracy=0.9, tier=tier))
               for s, tier in enumerate(["B", "B", "gpu-full"])]
    rows = aggregate(records)
    assert [(r["tier"], r["accuracy"]["n"]) for r in rows] == [("B", 2), ("gpu-full", 1)]
    assert rows[0]["label"] == "ce"  # the tier is a column of its own, not a variant


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 (m = 3): 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; 1 x 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.04, 0.01, None, 0.03]) == pytest.approx([0.06, 0.03, None, 0.06])
    assert holm([0.6, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_reference_against_every_method_into_results_json(tmp_path):
    from pipeline.compare.stage import run_compare
    from pipeline.errors import GlossError

    dirs = []
    for s in range(3):
        dirs.append(fake_run(tmp_path / f"ce-{s}", split_seed=s, seed=s, accuracy=0.90 + 0.01 * s, tier="B"))
        dirs.append(fake_run(tmp_path / f"gl-{s}", split_seed=s, seed=s, accuracy=0.92 + 0.02 * s, loss="gloss+ce",
                             tier="B"))
        dirs.append(fake_run(tmp_path / f"scl-{s}", split_seed=s, seed=s, accuracy=0.5, loss="scl+ce", tier="B"))
    out = tmp_path / "out"
    run_compare(None, [str(d) for d in dirs], out, None, "gloss+ce:ce", echo=lambda _: None, reference="gloss+ce")
    results = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in results["aggregated"]}
    assert rows["ce"]["tier"] == "B" and rows["ce"]["accuracy"] == pytest.approx({"mean": 0.91, "std": 0.01, "n": 3})
    assert len(results["runs"]) == 9 and results["published"]["note"] == "published, not measured"
    accuracy = {p["baseline"]: p for p in results["paired"] if p["metric"] == "accuracy"}
    assert set(accuracy) == {"ce", "scl+ce"} and accuracy["ce"]["mean_difference"] == pytest.approx(0.03)
    assert accuracy["ce"]["p_holm"] == pytest.approx(accuracy["ce"]["p_value"])  # one dataset: nothing to correct
    assert {p["metric"] for p in results["paired"]} == {"accuracy", "macro_f1", "epochs_to_99", "seconds_to_99"}
    assert (out / "predictors.png").is_file() and "| R8 | ce | 3 | B | 0, 1, 2 |" in (out / "table.md").read_text()
    with pytest.raises(GlossError, match="--reference lcl\\+ce: no finished run of that method"):
        run_compare(None, [str(d) for d in dirs], out, None, "gloss+ce:ce", echo=lambda _: None, reference="lcl+ce")
    # a reference of another tier pairs with its own tier's rows only
    floor = [fake_run(tmp_path / f"gl-adapter-{s}", split_seed=s, seed=s, accuracy=0.8, loss="gloss+ce",
                      tier="adapter") for s in range(3)]
    floor += [fake_run(tmp_path / f"ce-adapter-{s}", split_seed=s, seed=s, accuracy=0.7, tier="adapter")
              for s in range(3)]
    run_compare(None, [str(d) for d in dirs + floor], out, None, "gloss+ce:ce", echo=lambda _: None,
                reference="gloss+ce")
    pairs = [p for p in json.loads((out / "results.json").read_text())["paired"] if p["metric"] == "accuracy"]
    assert sorted((p["method_tier"], p["baseline_tier"], p["baseline"]) for p in pairs) == [
        ("B", "B", "ce"), ("B", "B", "scl+ce"), ("adapter", "adapter", "ce")]
    assert next(p for p in pairs if p["method_tier"] == "adapter")["mean_difference"] == pytest.approx(0.1)
