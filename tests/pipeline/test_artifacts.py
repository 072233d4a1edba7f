import numpy as np
import pytest
import torch

from pipeline.artifacts import (
    checkpoint_path,
    default_run_name,
    history_summary,
    load_head,
    load_matrix,
    model_dir,
    read_history,
    save_head,
    write_history,
)
from pipeline.errors import GlossError


def test_run_names_and_paths():
    assert default_run_name("R8", "gloss+ce", 3) == "R8-gloss-ce-seed3"
    assert default_run_name("mr", "textgcn", 0) == "mr-textgcn-seed0"
    assert model_dir("RUN/train").as_posix() == "RUN/train/model"
    assert checkpoint_path("RUN").as_posix() == "RUN/.scratch/train/last.pt"


def test_history_round_trip_and_summary(tmp_path):
    records = [{"epoch": 1, "val_macro_f1": 0.5, "val_accuracy": float("nan")}, {"epoch": 2, "val_macro_f1": 0.7}]
    path = tmp_path / "history.jsonl"
    write_history(records, path)
    assert [p.name for p in tmp_path.iterdir()] == ["history.jsonl"]
    back = read_history(path)
    assert [r["epoch"] for r in back] == [1, 2]
    summary = history_summary(back)
    assert summary["epochs"] == 2 and summary["best_val_macro_f1"] == 0.7
    assert summary["best_val_accuracy"] is None and summary["best_val_macro_silhouette"] is None


@pytest.mark.parametrize("text, message", [('{"epoch": 1}\nnot json\n', "line 2: not valid JSON"),
                                           ("[1, 2]\n", "line 1: expected a JSON object")])
def test_bad_history_names_the_line(tmp_path, text, message):
    path = tmp_path / "history.jsonl"
    path.write_text(text)
    with pytest.raises(GlossError, match=message):
        read_history(path)


def test_head_round_trip(tmp_path):
    assert load_head(tmp_path) is None
    head = torch.nn.Linear(4, 3)
    save_head(head, tmp_path)
    back = load_head(tmp_path)
    assert (back.in_features, back.out_features) == (4, 3)
    assert torch.equal(back.weight, head.weight) and torch.equal(back.bias, head.bias)
    with pytest.raises(GlossError, match="the head has 3 classes, this run 5"):
        load_head(tmp_path, num_classes=5)


def test_load_matrix_checks(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((3, 2), dtype=np.float64))
    assert load_matrix(path, 3, "test", columns=2, dtype=np.float32).dtype == np.float32
    with pytest.raises(GlossError, match="3 rows, but the test split has 4 documents"):
        load_matrix(path, 4, "test")
    with pytest.raises(GlossError, match="2 class columns, but the dataset has 5 classes"):
        load_matrix(path, columns=5)
    np.save(path, np.array([[0.0, -np.inf], [np.nan, 1.0]]))
    with pytest.raises(GlossError, match="row 1 holds NaN"):
        load_matrix(path, allow_inf=True)
    with pytest.raises(GlossError, match="row 0 holds NaN or infinite values"):
        load_matrix(path)
    np.save(path, np.zeros(3))
    with pytest.raises(GlossError, match="expected a 2-D numeric array"):
        load_matrix(path)
    (tmp_path / "bad.npy").write_text("not an array")
    with pytest.raises(GlossError, match="not a readable .npy array"):
        load_matrix(tmp_path / "bad.npy")
