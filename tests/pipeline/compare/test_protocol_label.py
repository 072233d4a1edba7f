"""`gloss compare` names the training protocol (--train-layers) beside the method: `gloss+ce [layers=2]`."""

from pipeline.compare.aggregate import RunRecord, aggregate, paired_difference, protocol_label


def _record(method, seed, accuracy, layers, lam=0.8):
    settings = {"data.dataset": "R8", "train.objective.lam": lam}
    if layers is not None:
        settings["train.loop.train_layers"] = layers
    record = RunRecord("x", "R8", method, seed, accuracy, accuracy, None, 1.0, 2, 10.0, 100.0, [0.5],
                       settings=settings)
    record.config_hash = f"{method}-{layers}-{lam}"
    return record


def test_protocol_label_of_partial_full_and_older_runs():
    assert protocol_label({"train.loop.train_layers": "2"}) == " [layers=2]"
    assert protocol_label({"train.loop.train_layers": "0"}) == " [layers=0]"
    assert protocol_label({"train.loop.train_layers": "all"}) == "" and protocol_label({}) == ""


def test_rows_and_pairs_carry_the_protocol_not_as_a_variant():
    records = [_record("gloss+ce", 0, 0.9, "2"), _record("gloss+ce", 0, 0.95, "all"),
               _record("gloss+ce", 0, 0.93, "2", lam=0.5), _record("ce", 0, 0.88, "2")]
    labels = [row["label"] for row in aggregate(records)]
    assert labels == ["gloss+ce [layers=2] (objective.lam=0.8)", "gloss+ce (objective.lam=0.8)",
                      "gloss+ce [layers=2] (objective.lam=0.5)", "ce [layers=2]"]
    pairs = paired_difference(records, "gloss+ce", "ce")
    assert pairs[0]["method_variant"] == "layers=2, objective.lam=0.8" and pairs[0]["baseline_variant"] == "layers=2"
