import math

import pytest

from pipeline.compare.aggregate import RunRecord, aggregate, mean_std, paired_difference


def _record(dataset, method, seed, accuracy):
    return RunRecord("x", dataset, method, seed, accuracy, accuracy, None, 1.0, 2, 10.0, 100.0, [0.5])


def test_mean_std_by_hand():
    cell = mean_std([0.90, 0.92, 0.97])
    assert cell["mean"] == pytest.approx(0.93)
    # deviations -0.03, -0.01, 0.04 -> squares sum 0.0026 -> / (n - 1) = 0.0013
    assert cell["std"] == pytest.approx(math.sqrt(0.0013))
    assert cell["n"] == 3
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}
    assert mean_std([None]) == {"mean": None, "std": None, "n": 0}


def test_aggregate_groups_by_dataset_and_method():
    records = [_record("R8", "ce", 0, 0.9), _record("R8", "ce", 1, 0.8), _record("mr", "ce", 0, 0.7)]
    rows = aggregate(records)
    assert [(r["dataset"], r["method"], r["accuracy"]["n"]) for r in rows] == [("R8", "ce", 2), ("mr", "ce", 1)]
    assert rows[0]["accuracy"]["mean"] == pytest.approx(0.85)


def test_paired_difference_and_t_test_by_hand():
    base = [0.80, 0.81, 0.82]
    ours = [0.81, 0.83, 0.85]  # differences 0.01, 0.02, 0.03
    records = [_record("R8", "ce", s, a) for s, a in enumerate(base)]
    records += [_record("R8", "gloss+ce", s, a) for s, a in enumerate(ours)]
    [result] = paired_difference(records, "gloss+ce", "ce")
    assert result["mean_difference"] == pytest.approx(0.02)
    # t = mean / (sd / sqrt(n)) = 0.02 / (0.01 / sqrt(3)) = 2 sqrt(3); df = 2 has the closed form
    # p = 1 - t / sqrt(2 + t^2) = 1 - 2 sqrt(3) / sqrt(14)
    assert result["p_value"] == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), rel=1e-6)


def test_paired_difference_needs_three_seeds_for_a_p_value():
    records = [_record("R8", "ce", 0, 0.8), _record("R8", "gloss+ce", 0, 0.9), _record("R8", "gloss+ce", 1, 0.9)]
    [result] = paired_difference(records, "gloss+ce", "ce")
    assert result["n"] == 1 and result["p_value"] is None and result["no_test"] == "n < 3"


def test_constant_differences_get_no_p_value_and_the_table_says_why():
    """Three replicates 2 points apart each: the t-test is undefined, so no p-value (not 0), and the reason shows."""
    from pipeline.compare.report import markdown_table

    records = [_record("R8", "ce", s, 0.80) for s in range(3)] + [_record("R8", "gloss+ce", s, 0.82) for s in range(3)]
    [result] = paired_difference(records, "gloss+ce", "ce")
    assert result["n"] == 3 and result["p_value"] is None and result["no_test"] == "differences do not vary"
    assert result["p_holm"] is None
    table = markdown_table(aggregate(records), [], [result])
    assert "| +2.00 points | n/a (differences do not vary) | n/a |" in table


def test_markdown_and_csv_tables_carry_the_linear_probe():
    from pipeline.compare.report import csv_table, markdown_table

    with_probe = _record("R8", "ce", 0, 0.9)
    with_probe.probe_accuracy = 0.95
    rows = aggregate([with_probe, _record("R8", "textgcn", 0, 0.97)])
    table = markdown_table(rows, [], [])
    assert "linear probe acc. (%)" in table.splitlines()[0]
    ce_line, textgcn_line = table.splitlines()[2:4]
    assert "| 90.00 | 90.00 | 95.00 |" in ce_line and "| 97.00 | 97.00 | n/a |" in textgcn_line
    header, first = csv_table(rows).splitlines()[:2]
    assert "probe_accuracy_mean" in header.split(",")
    assert first.split(",")[header.split(",").index("probe_accuracy_mean")] == "0.95"


def test_published_numbers_have_one_column_per_benchmark_for_slices_and_full_data():
    from pipeline.compare.published import published_rows
    from pipeline.compare.report import markdown_table

    rows = aggregate([_record("R8 (train<=1000)", "ce", 0, 0.9), _record("R8", "textgcn", 0, 0.97)])
    published = published_rows([r["dataset"] for r in rows])
    textgcn = next(p for p in published if p["method"] == "TextGCN")
    assert textgcn["accuracy"] == {"R8": 97.07}
    header, _, first = markdown_table(rows, published, []).split("\n\n")[3].splitlines()[:3]
    assert header == "| method (published, full training sets) | R8 |" and first.endswith("| 97.07 |")


def _variant(method, seed, accuracy, lam, val_fraction=0.1):
    from pipeline.hashing import sha256_json

    record = _record("R8", method, seed, accuracy)
    record.run_dir = f"runs/{method}-{lam}-{val_fraction}-{seed}"
    record.settings = {"data.dataset": "R8", "data.val_fraction": val_fraction, "train.objective.loss": method,
                       "train.objective.lam": lam}
    record.config_hash = sha256_json(record.settings)
    return record


def test_runs_with_different_settings_are_separate_rows_labelled_by_what_differs():
    records = [_variant("gloss+ce", s, 0.9, 0.8) for s in range(3)]
    records += [_variant("gloss+ce", s, 0.7, 0.5) for s in range(3)]
    rows = aggregate(records)
    assert [(r["label"], r["accuracy"]["n"], r["accuracy"]["mean"]) for r in rows] == [
        ("gloss+ce (objective.lam=0.8)", 3, pytest.approx(0.9)),
        ("gloss+ce (objective.lam=0.5)", 3, pytest.approx(0.7)),
    ]
    assert rows[0]["runs"] == [f"runs/gloss+ce-0.8-0.1-{s}" for s in range(3)]
    from pipeline.compare.report import csv_table, markdown_table

    assert "| R8 | gloss+ce (objective.lam=0.5) | 3 |" in markdown_table(rows, [], [])
    assert "objective.lam=0.5" in csv_table(rows)


def test_paired_test_pairs_only_replicates_of_one_setting_on_the_same_data():
    records = [_variant("ce", s, 0.80, 0.8) for s in range(3)]
    records += [_variant("gloss+ce", s, 0.90, 0.8) for s in range(3)]
    records += [_variant("gloss+ce", s, 0.70, 0.5) for s in range(3)]
    records += [_variant("gloss+ce", s, 0.99, 0.8, val_fraction=0.2) for s in range(3)]  # other data: never paired
    results = paired_difference(records, "gloss+ce", "ce")
    assert [(r["method_variant"], r["n"], round(r["mean_difference"], 6)) for r in results] == [
        ("data.val_fraction=0.1, objective.lam=0.8", 3, 0.1), ("data.val_fraction=0.1, objective.lam=0.5", 3, -0.1)]


def test_accuracy_limits_show_the_whole_error_bars():
    from pipeline.compare.plots import value_limits

    cells = [{"mean": 0.60, "std": 0.20, "n": 3}, {"mean": 0.97, "std": 0.05, "n": 3}]
    low, high = value_limits(cells, 100.0, margin=1.0)
    assert low <= 40.0 and high >= 102.0  # 60 - 20 and 97 + 5 both inside
    assert value_limits([{"mean": None, "std": None, "n": 0}], 100.0) is None


def test_run_identity_ignores_the_training_seed_and_places_but_not_the_split_seed():
    """(gloss compare then drops the split seed too: see test_replicates.py.)"""
    from pipeline.artifacts import run_config_hash, run_identity

    prepare = {"dataset": "R8", "data_root": "/data/a", "val_fraction": 0.1, "seed": 0, "limit": 300}
    train = {"method": "finetune", "encoder": {"model": "/home/x/models/minilm", "device": "cpu"},
             "loop": {"seed": 0, "lr": 2e-5}}
    identity = run_identity(prepare, train)
    assert identity["train.encoder.model"] == "minilm" and "train.loop.seed" not in identity
    assert "data.data_root" not in identity and "train.encoder.device" not in identity
    moved = run_config_hash({**prepare, "data_root": "/elsewhere"},
                            {**train, "loop": {"seed": 7, "lr": 2e-5}, "encoder": {"model": "/y/minilm"}})
    assert moved == run_config_hash(prepare, train)
    assert run_config_hash({**prepare, "seed": 1}, train) != run_config_hash(prepare, train)
    assert run_config_hash(prepare, {**train, "loop": {"seed": 0, "lr": 1e-5}}) != run_config_hash(prepare, train)


def test_dataset_label_marks_train_and_test_slices():
    from pipeline.compare.aggregate import benchmark_name, dataset_label

    assert dataset_label({"dataset": "R8"}) == "R8"
    assert dataset_label({"dataset": "R8", "limit": 1000}) == "R8 (train<=1000)"
    assert dataset_label({"dataset": "R8", "limit": 1000, "limit_test": 444}) == "R8 (train<=1000, test<=444)"
    assert dataset_label({"dataset": "mr", "limit_test": 500}) == "mr (test<=500)"
    assert benchmark_name(dataset_label({"dataset": "R8", "limit": 10, "limit_test": 5})) == "R8"


def test_the_headline_predictor_is_part_of_a_rows_identity():
    from pipeline.compare.aggregate import predictor_label

    assert predictor_label({"predictor": "head", "setting": "inductive"}) == ""
    assert predictor_label({}) == ""  # evaluated before graph predictors existed: the head
    assert predictor_label({"predictor": "lpa", "setting": "inductive"}) == " [lpa]"
    assert predictor_label({"predictor": "mix", "setting": "transductive"}) == " [mix, transductive]"
    assert predictor_label({"predictor": "knn", "setting": "inductive"}) == " [knn]"
