"""The model card (``README.md``) of a trained model folder, ``RUN/train/model/``.

The train stage writes it with what is known then: the base model, the dataset and its split sizes, the loss
and its hyperparameters (naming G-Loss, with its citation, for the G-Loss losses), which layers were trained,
and the *validation* scores of the kept epoch as a Hugging Face ``model-index``. ``gloss evaluate`` writes the
test scores to ``RUN/evaluate/test_results.json``; ``gloss run`` then renders the card again from the two
stages' recorded outputs with the test scores added (:func:`add_test_results`).

How that fits the manifest rules: a stage writes only its own folder, and its manifest records the sha256 of
every file as the stage wrote it. ``gloss run`` is a sequence of stages, not a stage: after evaluate it
replaces the card, a derived presentation file, atomically (a temporary file renamed into place) and touches
no manifest, so no cache key changes and no stage reruns. The train manifest's sha256 of ``model/README.md``
stays that of the validation-only card the train stage wrote; the card's test section names
``RUN/evaluate/test_results.json``, whose sha256 the evaluate manifest records, as the source of its numbers.
Rendering is deterministic, so the card can always be rebuilt from the two manifests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
TEST_RESULTS_FILE = "test_results.json"  # RUN/evaluate/test_results.json

G_LOSS_CITATION = """@inproceedings{sharma2025gloss,
  title     = {G-Loss: Graph-Guided Fine-Tuning of Language Models},
  author    = {Sharma and others},
  booktitle = {Learning on Graphs Conference (LoG)},
  year      = {2025},
  eprint    = {2604.25853},
  archivePrefix = {arXiv}
}"""

LOSS_NAMES = {
    "ce": "cross-entropy on a linear head",
    "gloss": "G-Loss (graph-guided loss; standalone, no head)",
    "gloss+ce": "G-Loss (graph-guided loss) + cross-entropy on a linear head",
    "scl+ce": "supervised contrastive loss + cross-entropy on a linear head",
    "lcl+ce": "label-aware contrastive loss + cross-entropy on a linear head",
    "triplet": "batch-all triplet loss (no head)",
    "cosine": "pairwise cosine loss (no head)",
}
# The objective options each loss reads (``ObjectiveConfig`` field -> the CLI option that sets it).
LOSS_OPTIONS = {
    "gloss": {"gamma": "--gamma", "sigma": "--sigma", "graph": "--graph", "k": "--k", "variant": "--variant",
              "loss_form": "--loss-form", "class_weights": "--class-weights"},
    "gloss+ce": {"lam": "--lambda", "gamma": "--gamma", "sigma": "--sigma", "graph": "--graph", "k": "--k",
                 "variant": "--variant", "loss_form": "--loss-form", "class_weights": "--class-weights"},
    "scl+ce": {"lam": "--lambda", "temperature": "--temperature", "class_weights": "--class-weights"},
    "lcl+ce": {"lam": "--lambda", "temperature": "--temperature", "lcl_weighting": "--lcl-weighting",
               "class_weights": "--class-weights"},
    "triplet": {"margin": "--margin"},
    "ce": {"class_weights": "--class-weights"},
    "cosine": {},
}
LOOP_OPTIONS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "head_lr": "--head-lr",
                "optimizer": "--optimizer", "weight_decay": "--weight-decay", "schedule": "--schedule",
                "precision": "--precision", "seed": "--seed"}
METRIC_NAMES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "macro_silhouette": "Macro-silhouette"}


def uses_g_loss(loss: str) -> bool:
    return loss in ("gloss", "gloss+ce")


def card_facts(dataset: str, prepare_summary: dict, train_config: dict, train_summary: dict) -> dict[str, Any]:
    """What the card says, from the prepare summary and the train stage's config and summary (plain JSON)."""
    objective, loop = train_config["objective"], train_config["loop"]
    loss = objective["loss"]
    hyperparameters = {option: objective[key] for key, option in LOSS_OPTIONS.get(loss, {}).items()}
    if uses_g_loss(loss) and train_summary.get("sigma") is not None:
        hyperparameters["--sigma"] = f"{objective['sigma']} (= {train_summary['sigma']:.4g})" if isinstance(
            objective["sigma"], str) and not objective["sigma"].startswith("batch-") else objective["sigma"]
    hyperparameters |= {option: loop[key] for key, option in LOOP_OPTIONS.items()}
    hyperparameters |= {"--max-length": train_config["encoder"]["max_length"],
                        "--pooling": train_config["encoder"]["pooling"]}
    val = {name: train_summary.get("best_val", {}).get(f"val_{name}") for name in METRIC_NAMES}
    return {
        "base_model": train_config["encoder"]["model"],
        "dataset": dataset,
        "labels": prepare_summary.get("labels", []),
        "rows": prepare_summary.get("rows", {}),
        "val_split": prepare_summary.get("val_split"),
        "loss": loss,
        "hyperparameters": hyperparameters,
        "preset": train_config.get("preset"),
        "train_layers": train_summary.get("train_layers", loop.get("train_layers")),
        "trainable_parameters": train_summary.get("trainable_parameters"),
        "has_head": bool(train_summary.get("has_head")),
        "best_epoch": train_summary.get("best_epoch"),
        "epochs_run": train_summary.get("epochs_run"),
        "validation": {k: v for k, v in val.items() if isinstance(v, int | float)},
    }


def _model_index(facts: dict, test: dict | None) -> list[str]:
    """The YAML ``model-index`` lines: one result per split scored."""
    lines = ["model-index:", f"- name: {json.dumps(facts['dataset'] + '-' + facts['loss'])}", "  results:"]
    scored = [("validation", facts["validation"])]
    if test is not None:
        scored.append(("test", {k: test[k] for k in METRIC_NAMES if isinstance(test.get(k), int | float)}))
    for split, metrics in scored:
        if not metrics:
            continue
        lines += ["  - task:", "      type: text-classification", "      name: Text Classification",
                  "    dataset:", f"      name: {json.dumps(facts['dataset'])}", f"      type: {json.dumps(facts['dataset'])}",
                  f"      split: {split}", "    metrics:"]
        for key, value in metrics.items():
            lines += [f"    - type: {key}", f"      value: {value:.4f}", f"      name: {split} {METRIC_NAMES[key]}"]
    return lines


def _front_matter(facts: dict, test: dict | None) -> list[str]:
    tags = ["sentence-transformers", "text-classification", "gloss"] + (["g-loss"] if uses_g_loss(facts["loss"]) else [])
    return ["---", "library_name: sentence-transformers", "pipeline_tag: text-classification",
            f"base_model: {json.dumps(facts['base_model'])}", "tags:", *[f"- {tag}" for tag in tags],
            *_model_index(facts, test), "---", ""]


def _scores(metrics: dict) -> str:
    return ", ".join(f"{METRIC_NAMES[k]} {v:.4f}" for k, v in metrics.items()) or "none recorded"


def render_card(facts: dict, test: dict | None = None) -> str:
    """The card's Markdown (YAML front matter with the ``model-index``, then the text)."""
    rows = facts["rows"]
    split_sizes = ", ".join(f"{split} {rows[split]:,}" for split in ("train", "val", "test") if split in rows)
    g_loss = uses_g_loss(facts["loss"])
    text = [
        f"# {facts['dataset']} classifier: {facts['base_model']} fine-tuned with {facts['loss']}", "",
        f"A [sentence-transformers](https://www.sbert.net) encoder (`{facts['base_model']}`) fine-tuned by gloss on "
        f"the {facts['dataset']} dataset ({len(facts['labels'])} classes) with "
        f"{LOSS_NAMES.get(facts['loss'], facts['loss'])}.", "",
        "## Data", "",
        f"- Dataset: {facts['dataset']}; documents per split: {split_sizes} (validation split "
        f"{facts['val_split'] or 'as prepared'}).",
        f"- Labels: {', '.join(f'`{label}`' for label in facts['labels'])}.", "",
        "## Training", "",
        f"- Loss: {LOSS_NAMES.get(facts['loss'], facts['loss'])} (`--loss {facts['loss']}`)"
        + (f"; preset `{facts['preset']}`." if facts["preset"] else "."),
        f"- Trained layers: `--train-layers {facts['train_layers']}`"
        + (f" ({facts['trainable_parameters']:,} trainable parameters)." if facts["trainable_parameters"] else "."),
        f"- Kept epoch: {facts['best_epoch']} of {facts['epochs_run']} (best validation score).",
        "- Hyperparameters:", "",
        "| option | value |", "|---|---|",
        *[f"| `{option}` | {value} |" for option, value in facts["hyperparameters"].items()], "",
        "## Results", "",
        f"- Validation ({rows.get('val', 'n/a')} documents): {_scores(facts['validation'])}.",
    ]
    if test is None:
        text.append("- Test: not evaluated yet (`gloss evaluate` writes them; `gloss run` adds them here).")
    else:
        scored = {k: test[k] for k in METRIC_NAMES if isinstance(test.get(k), int | float)}
        text.append(f"- Test ({test.get('documents', 'n/a')} documents, from the {test.get('source', 'head')}): "
                    f"{_scores(scored)} (from `RUN/evaluate/{TEST_RESULTS_FILE}`).")
    text += ["", "## Use", "", "```python", "from pipeline.classifier import GlossClassifier", "",
             'classifier = GlossClassifier.from_pretrained("path/to/this/folder")',
             'classifier.predict(["a new document"])        # label names',
             'classifier.predict_proba(["a new document"])  # [N, C] probabilities, columns in classifier.labels',
             "```", ""]
    if not facts["has_head"]:
        text += ["This model has no classification head (a standalone embedding loss): use it as an encoder, "
                 "`SentenceTransformer(path).encode(texts)`, or fit a classifier on its embeddings.", ""]
    if g_loss:
        text += ["## Citation", "", "G-Loss: Sharma et al., *G-Loss: Graph-Guided Fine-Tuning of Language Models*, "
                 "LoG 2025, arXiv 2604.25853.", "", "```bibtex", G_LOSS_CITATION, "```", ""]
    return "\n".join(_front_matter(facts, test) + text)


def write_card(folder: str | Path, facts: dict, test: dict | None = None) -> Path:
    """Write ``folder/README.md`` atomically (a temporary file renamed into place)."""
    path = Path(folder) / CARD_FILE
    tmp = path.with_name(f".{CARD_FILE}.tmp-{os.getpid()}")
    tmp.write_text(render_card(facts, test), encoding="utf-8")
    os.replace(tmp, path)
    return path


def add_test_results(run_dir: str | Path) -> Path:
    """Render ``RUN/train/model/README.md`` again with the test scores of ``RUN/evaluate/test_results.json``
    (what ``gloss run`` does after evaluate; see the module docstring for the manifest rules)."""
    from pipeline.artifacts import model_dir
    from pipeline.manifest import load_manifest

    prepare, train, evaluate = (load_manifest(run_dir, stage) for stage in ("prepare", "train", "evaluate"))
    facts = card_facts(prepare.config["dataset"], prepare.summary, train.config, train.summary)
    test = json.loads(evaluate.output(TEST_RESULTS_FILE).read_text())
    return write_card(model_dir(train.stage_dir), facts, test)
