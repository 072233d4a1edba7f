"""BertGCN joint training (Lin et al., Findings of ACL 2021, https://arxiv.org/abs/2105.05727) with any
sentence-transformer encoder (default: the packaged MiniLM).

1. The encoder and a linear head start from a CE fine-tuned run (``--init-from RUN``) or, without one,
   from ``--epochs`` of CE fine-tuning done here first (the same loop as ``--loss ce``).
2. The TextGCN graph is built over train + val + test documents and their words; every document is
   encoded into a memory bank (document node features; word nodes are zero).
3. Joint epochs: for each batch of training documents, the batch's bank rows are recomputed with
   gradients, the GCN runs over the whole graph, and the prediction is
   ``m * softmax(GCN) + (1 - m) * softmax(head(encoder))`` (NLL of its log). Encoder and head learn at
   ``bertgcn_encoder_lr`` (1e-5), the GCN at ``bertgcn_lr`` (1e-3). The whole bank is re-encoded after
   every epoch, then validation scores are taken; the best epoch by val macro-F1 is kept.

What the encoder trains is ``--train-layers`` (:mod:`pipeline.training.partial`, the same batch encoders as
fine-tuning; ``auto`` is resolved by the train stage): ``all`` runs every layer on every batch and re-encodes
the whole corpus each epoch; ``N`` trains the top ``N`` layers on the frozen lower layers' per-token states,
computed once per document and kept in the shared cache (keyed by the ``--init-from`` run's model files), so
a batch and the bank's re-encoding run only the top ``N`` layers; ``0`` trains a fresh residual adapter on the
frozen pooled embeddings, at the GCN's learning rate (``bertgcn_lr``: it is new, like the GCN). Step 1 (CE
without ``--init-from``) trains the same part as the joint epochs.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from graphs.models import BertGCN
from pipeline import options
from pipeline.artifacts import (
    HEAD_FILE,
    HISTORY_FILE,
    SPLITS,
    load_head,
    load_splits,
    model_dir,
    split_labels,
    split_texts,
    write_history,
)
from pipeline.baselines.textgcn import build_textgcn_graph
from pipeline.encoder import EncoderConfig, load_encoder
from pipeline.errors import GlossError
from pipeline.evaluation.metrics import accuracy_and_macro_f1, silhouette
from pipeline.manifest import Manifest, StageContext, load_manifest
from pipeline.resources import peak_rss_mb
from pipeline.training.batching import plan_batches
from pipeline.training.loop import EPOCH_SEED_STRIDE, Checkpoints, FitCallbacks, FitData, fit
from pipeline.training.objectives import Objective, ObjectiveConfig
from pipeline.training.partial import build_encoder, describe, param_groups


def _require_same_split(init: str, prepared: Manifest) -> None:
    """Refuse an --init-from run prepared on other splits: its encoder may have trained on this run's test
    documents."""
    theirs = load_manifest(init, "prepare").data.get("outputs", {})
    ours = prepared.data.get("outputs", {})
    differ = [name for name in (f"{split}.csv" for split in SPLITS)
              if theirs.get(name, {}).get("sha256") != ours.get(name, {}).get("sha256")]
    if differ:
        raise GlossError(f"--init-from {init}: its prepared {', '.join(differ)} differ from this run's "
                         "(use the same --dataset, --limit, --val-fraction and --split-seed)")


def _load_fine_tuned(init: str, config, prepared: Manifest, num_classes: int, echo):
    """(encoder, head, its EncoderConfig) of the CE fine-tuned run ``init``, prepared on the same splits."""
    _require_same_split(init, prepared)
    trained = load_manifest(init, "train")
    if trained.config.get("method") != "finetune" or not trained.summary.get("has_head"):
        raise GlossError(f"--init-from {init}: expected a fine-tuned run with a head (e.g. --loss ce)")
    folder = model_dir(trained.stage_dir)
    encoder = EncoderConfig(str(folder), config.encoder.pooling, config.encoder.max_length, config.encoder.device)
    model = load_encoder(encoder)
    head = load_head(folder, model.device, num_classes)
    if head is None:
        raise GlossError(f"--init-from {init}: {folder / HEAD_FILE} not found")
    echo(f"train: BertGCN starts from the fine-tuned encoder of {init}")
    return model, head, encoder


@dataclass
class _Corpus:
    """The splits as the graph's documents: train, then val, then test (document ``i`` is node ``i``)."""

    texts: dict[str, list[str]]
    labels: dict[str, np.ndarray]  # split -> [N_split] label ids
    all_texts: list[str] = field(init=False)
    offsets: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.all_texts = [text for split in SPLITS for text in self.texts[split]]
        sizes = [len(self.texts[split]) for split in SPLITS]
        self.offsets = dict(zip(SPLITS, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))

    def rows(self, split: str) -> slice:
        """The split's document (node) rows."""
        return slice(self.offsets[split], self.offsets[split] + len(self.texts[split]))

    def node_ids(self, split: str, device) -> torch.Tensor:
        """The split's document node ids ``[N_split]``."""
        rows = self.rows(split)
        return torch.arange(rows.start, rows.stop, device=device)


def _initial_encoder(ctx: StageContext, config, prepared: Manifest, corpus: _Corpus, num_classes, echo):
    """(encoder, head, batch encoder): the CE fine-tuned encoder and head, loaded from --init-from or trained
    here, and the batch encoder of ``--train-layers`` over every split (frozen parts cached)."""
    echo(f"train: BertGCN --train-layers {config.loop.train_layers}: {describe(config.loop.train_layers)}")
    if config.gcn.init_from:
        model, head, encoder = _load_fine_tuned(config.gcn.init_from, config, prepared, num_classes, echo)
        built = build_encoder(model, config.loop.train_layers, encoder, corpus.texts, config.loop.eval_batch_size,
                              echo)
        return model, head, built.encoder
    torch.manual_seed(config.loop.seed)
    model = load_encoder(config.encoder)
    built = build_encoder(model, config.loop.train_layers, config.encoder, corpus.texts,
                          config.loop.eval_batch_size, echo)
    head = torch.nn.Linear(model.get_embedding_dimension(), num_classes).to(model.device)
    echo(f"train: BertGCN step 1: CE fine-tuning for {config.loop.epochs} epoch(s)")
    fit(model, head, Objective(ObjectiveConfig(loss="ce"), num_classes),
        FitData.from_splits(corpus.texts, corpus.labels), config.loop, Checkpoints(ctx.scratch_dir / "ce"),
        callbacks=FitCallbacks(echo=echo), encoder=built.encoder)
    return model, head, built.encoder


class _Joint:
    """The encoder, its linear head and the BertGCN graph half over a memory bank, trained together.

    ``encoder`` is the batch encoder (:mod:`pipeline.training.partial`) of ``model`` over the corpus's splits:
    it runs what ``--train-layers`` trains."""

    def __init__(self, model, head: torch.nn.Linear, encoder, adj: torch.Tensor, corpus: _Corpus, num_classes: int,
                 config):
        self.model, self.head, self.encoder, self.corpus, self.loop = model, head, encoder, corpus, config.loop
        self.num_classes = num_classes
        self.device = device = model.device
        self.doc_ids = {split: corpus.node_ids(split, device) for split in SPLITS}
        torch.manual_seed(self.loop.seed)
        gcn = config.gcn
        self.bertgcn = BertGCN(adj, self.encode_bank(), num_classes, hidden_channels=gcn.hidden,
                               dropout=gcn.dropout, m=gcn.m, activation=gcn.bertgcn_activation,
                               bias=gcn.bertgcn_bias).to(device)
        groups = param_groups(model, encoder, gcn.bertgcn_encoder_lr, gcn.bertgcn_lr)  # trained weights; adapter
        groups[0]["params"] = groups[0]["params"] + list(head.parameters())
        self.optimizer = torch.optim.Adam(groups + [{"params": self.bertgcn.head.parameters(), "lr": gcn.bertgcn_lr}])
        # The original BertGCN steps MultiStepLR(milestones=[30], gamma=0.1) after every epoch.
        milestones = list(options.BERTGCN_MILESTONES) if gcn.bertgcn_schedule == "multistep" else []
        self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=milestones,
                                                             gamma=options.MULTISTEP_GAMMA)
        self.train_labels = torch.tensor(np.asarray(corpus.labels["train"]), device=device)

    @property
    def modules(self) -> tuple:
        return self.model, self.head, self.bertgcn

    def encode_bank(self) -> torch.Tensor:
        """Every document encoded without gradients, in eval mode ``[N_docs, D]``."""
        bank = np.concatenate([self.encoder.embed(split, self.loop.eval_batch_size) for split in SPLITS])
        return torch.from_numpy(bank).to(self.device)

    def predict(self, split: str) -> np.ndarray:
        """Log-probabilities ``[N_split, C]`` of a split's documents from the current bank."""
        for module in self.modules:
            module.eval()
        with torch.inference_mode():
            rows = self.bertgcn.bank[self.doc_ids[split]]
            return self.bertgcn(rows, self.head(rows), self.doc_ids[split]).float().cpu().numpy()

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training documents in batches, then the whole bank re-encoded; the mean loss."""
        torch.manual_seed(self.loop.seed * EPOCH_SEED_STRIDE + epoch)
        for module in self.modules:
            module.train()
        texts, total, docs = self.corpus.texts["train"], 0.0, 0
        for rows in plan_batches(np.ones(len(texts)), self.corpus.labels["train"], self.loop.batch_size,
                                 self.loop.seed, epoch, bucket=False):
            idx = torch.as_tensor(rows, device=self.device)
            embeddings = self.encoder.batch("train", rows)  # [B, D]
            log_probs = self.bertgcn(embeddings, self.head(embeddings), idx)  # [B, C]
            loss = F.nll_loss(log_probs, self.train_labels[idx])
            if not torch.isfinite(loss):
                raise GlossError(f"BertGCN epoch {epoch}: the loss is {loss.item()}; lower the learning rates")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.bertgcn.update_bank(idx, embeddings)
            total += float(loss.detach()) * len(rows)
            docs += len(rows)
        self.schedule.step()
        self.bertgcn.bank.copy_(self.encode_bank())
        return total / docs

    def state(self) -> tuple:
        return copy.deepcopy(tuple(module.state_dict() for module in self.modules))

    def load_state(self, state: tuple) -> None:
        for module, module_state in zip(self.modules, state, strict=True):
            module.load_state_dict(module_state)


def _end_epoch(joint: _Joint, epoch: int, train_loss: float, started: float, echo) -> dict:
    """Validation scores of the re-encoded bank: the epoch's history record."""
    scores = accuracy_and_macro_f1(joint.corpus.labels["val"], joint.predict("val").argmax(1),
                                   num_classes=joint.num_classes)
    record = {"epoch": epoch, "train_loss": train_loss, "val_accuracy": scores["accuracy"],
              "val_macro_f1": scores["macro_f1"], "seconds": round(time.perf_counter() - started, 2)}
    echo(f"train: BertGCN epoch {epoch}: loss={record['train_loss']:.4f} val_accuracy={scores['accuracy']:.4f} "
         f"val_macro_f1={scores['macro_f1']:.4f}, {record['seconds']:.0f}s")
    return record


def _train_joint(joint: _Joint, echo) -> tuple[list[dict], int]:
    """Joint epochs until ``loop.epochs`` or ``loop.patience`` epochs without a better val macro-F1; the best
    epoch's weights are restored. Returns the history and the best epoch."""
    loop = joint.loop
    history, best_f1, best_epoch, best_state, bad = [], -1.0, 0, None, 0
    for epoch in range(1, loop.epochs + 1):
        started = time.perf_counter()
        record = _end_epoch(joint, epoch, joint.train_epoch(epoch), started, echo)
        history.append(record)
        if record["val_macro_f1"] > best_f1:
            best_f1, best_epoch, bad = record["val_macro_f1"], epoch, 0
            best_state = joint.state()
        else:
            bad += 1
            if bad >= loop.patience:
                break
    joint.load_state(best_state)
    return history, best_epoch


def _write_outputs(ctx: StageContext, joint: _Joint, history: list[dict]) -> np.ndarray:
    """``logits_{val,test}.npy`` (log-probabilities), ``embeddings_{split}.npy`` and the history; the bank."""
    for split in ("val", "test"):
        np.save(ctx.output(f"logits_{split}.npy"), joint.predict(split))
    bank = joint.bertgcn.bank.float().cpu().numpy()  # [N_docs, D]
    for split in SPLITS:
        np.save(ctx.output(f"embeddings_{split}.npy"), bank[joint.corpus.rows(split)])
    write_history(history, ctx.output(HISTORY_FILE, rows=len(history)))
    return bank


def train_bertgcn(ctx: StageContext, config, prepared: Manifest, echo) -> dict:
    """The ``--method bertgcn`` stage body: CE encoder, graph, joint epochs, outputs; returns the summary."""
    frames, label_names = load_splits(prepared)
    corpus = _Corpus(split_texts(frames), split_labels(frames))
    num_classes = len(label_names)
    model, head, encoder = _initial_encoder(ctx, config, prepared, corpus, num_classes, echo)
    started = time.perf_counter()
    graph, _, build_seconds = build_textgcn_graph(corpus.all_texts, prepared.config["dataset"],
                                                  window_size=config.gcn.window, pair_count=config.gcn.pair_count)
    echo(f"train: BertGCN graph: {graph.num_nodes} nodes ({graph.num_words} words), built in {build_seconds:.1f}s")
    joint = _Joint(model, head, encoder, graph.to_torch_sparse().to(model.device), corpus, num_classes, config)
    history, best_epoch = _train_joint(joint, echo)
    bank = _write_outputs(ctx, joint, history)
    return {
        "method": "bertgcn", "loss": None, "has_head": True, "best_epoch": best_epoch, "epochs_run": len(history),
        "stopped_early": len(history) < config.loop.epochs,
        "best_val": {k: v for k, v in history[best_epoch - 1].items() if k.startswith("val_")},
        "val_macro_silhouette": (silhouette(bank[corpus.rows("val")], corpus.labels["val"]) or {}).get(
            "macro_silhouette"),
        "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in history])), 2),
        "total_seconds": round(time.perf_counter() - started, 1),
        "graph": {"nodes": graph.num_nodes, "words": graph.num_words, "build_seconds": round(build_seconds, 2)},
        "device": str(joint.device),
        "train_layers": config.loop.train_layers,
        "trainable_parameters": sum(p.numel() for group in joint.optimizer.param_groups for p in group["params"]),
        "peak_rss_mb": peak_rss_mb(),
    }
