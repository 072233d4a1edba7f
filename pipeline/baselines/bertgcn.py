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
"""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.encoder import EncoderConfig, embed_texts, load_encoder, to_device
from pipeline.errors import GlossError
from pipeline.evaluation.metrics import accuracy_and_macro_f1, silhouette
from pipeline.manifest import Manifest, StageContext, load_manifest
from pipeline.artifacts import load_splits
from pipeline.training.batching import plan_batches
from pipeline.training.loop import fit
from pipeline.training.objectives import Objective, ObjectiveConfig


def _require_same_split(init: str, prepared: Manifest) -> None:
    """Refuse an --init-from run prepared on other splits: its encoder may have trained on this run's test
    documents."""
    theirs = load_manifest(init, "prepare").data.get("outputs", {})
    ours = prepared.data.get("outputs", {})
    differ = [name for name in ("train.csv", "val.csv", "test.csv")
              if theirs.get(name, {}).get("sha256") != ours.get(name, {}).get("sha256")]
    if differ:
        raise GlossError(f"--init-from {init}: its prepared {', '.join(differ)} differ from this run's "
                         "(use the same --dataset, --limit, --val-fraction and --split-seed)")


def _initial_encoder(ctx: StageContext, config, prepared: Manifest, texts, labels, num_classes, echo):
    """(encoder, head) fine-tuned with CE: loaded from --init-from, or trained here."""
    init = config.gcn.init_from
    if init:
        _require_same_split(init, prepared)
        trained = load_manifest(init, "train")
        if trained.config.get("method") != "finetune" or not trained.summary.get("has_head"):
            raise GlossError(f"--init-from {init}: expected a fine-tuned run with a head (e.g. --loss ce)")
        model = load_encoder(EncoderConfig(str(trained.stage_dir / "model"), config.encoder.pooling,
                                           config.encoder.max_length, config.encoder.device))
        state = torch.load(trained.stage_dir / "model" / "head.pt", map_location=model.device, weights_only=True)
        if state["num_classes"] != num_classes:
            raise GlossError(f"--init-from {init}: its head has {state['num_classes']} classes, this run {num_classes}")
        head = torch.nn.Linear(state["dim"], num_classes).to(model.device)
        head.load_state_dict(state["state_dict"])
        echo(f"train: BertGCN starts from the fine-tuned encoder of {init}")
        return model, head
    torch.manual_seed(config.loop.seed)
    model = load_encoder(config.encoder)
    head = torch.nn.Linear(model.get_embedding_dimension(), num_classes).to(model.device)
    echo(f"train: BertGCN step 1: CE fine-tuning for {config.loop.epochs} epoch(s)")
    fit(model, head, Objective(ObjectiveConfig(loss="ce"), num_classes), texts["train"], labels["train"],
        texts["val"], labels["val"], config.loop, checkpoint_dir=ctx.scratch_dir / "ce", run_config={}, echo=echo)
    return model, head


def train_bertgcn(ctx: StageContext, config, prepared: Manifest, echo) -> dict:
    from graphs.models import BertGCN
    from pipeline.baselines.textgcn import build_textgcn_graph, peak_rss_mb

    frames, label_names = load_splits(prepared)
    splits = ("train", "val", "test")
    texts = {s: frames[s]["text"].tolist() for s in splits}
    labels = {s: frames[s]["label_id"].to_numpy() for s in splits}
    num_classes = len(label_names)
    model, head = _initial_encoder(ctx, config, prepared, texts, labels, num_classes, echo)
    device = model.device
    all_texts = texts["train"] + texts["val"] + texts["test"]
    offsets = {"train": 0, "val": len(texts["train"]), "test": len(texts["train"]) + len(texts["val"])}
    doc_ids = {s: torch.arange(offsets[s], offsets[s] + len(texts[s]), device=device) for s in splits}
    started = time.perf_counter()
    graph, _, build_seconds = build_textgcn_graph(all_texts, prepared.config["dataset"],
                                                  window_size=config.gcn.window, pair_count=config.gcn.pair_count)
    adj = graph.to_torch_sparse().to(device)
    echo(f"train: BertGCN graph: {graph.num_nodes} nodes ({graph.num_words} words), built in {build_seconds:.1f}s")

    def encode_bank() -> torch.Tensor:
        return torch.from_numpy(embed_texts(model, all_texts, config.loop.eval_batch_size)).to(device)

    torch.manual_seed(config.loop.seed)
    bertgcn = BertGCN(adj, encode_bank(), num_classes, hidden_channels=config.gcn.hidden,
                      dropout=config.gcn.dropout, m=config.gcn.m).to(device)
    optimizer = torch.optim.Adam([
        {"params": list(model.parameters()) + list(head.parameters()), "lr": config.gcn.bertgcn_encoder_lr},
        {"params": bertgcn.head.parameters(), "lr": config.gcn.bertgcn_lr},
    ])
    train_labels = torch.tensor(np.asarray(labels["train"]), device=device)
    lengths = np.ones(len(texts["train"]))

    def predict(split: str) -> np.ndarray:
        for module in (model, head, bertgcn):
            module.eval()
        with torch.inference_mode():
            rows = bertgcn.bank[doc_ids[split]]
            return bertgcn(rows, head(rows), doc_ids[split]).float().cpu().numpy()  # [N, C] log-probs

    history, best_f1, best_epoch, best_state, bad = [], -1.0, 0, None, 0
    for epoch in range(1, config.loop.epochs + 1):
        torch.manual_seed(config.loop.seed * 100_003 + epoch)
        for module in (model, head, bertgcn):
            module.train()
        epoch_start, total, docs = time.perf_counter(), 0.0, 0
        for rows in plan_batches(lengths, labels["train"], config.loop.batch_size, config.loop.seed, epoch,
                                 bucket=False):
            idx = torch.as_tensor(rows, device=device)
            features = to_device(model.preprocess([texts["train"][i] for i in rows]), device)
            embeddings = model(features)["sentence_embedding"]  # [B, D]
            log_probs = bertgcn(embeddings, head(embeddings), idx)  # [B, C]
            loss = F.nll_loss(log_probs, train_labels[idx])
            if not torch.isfinite(loss):
                raise GlossError(f"BertGCN epoch {epoch}: the loss is {loss.item()}; lower the learning rates")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bertgcn.update_bank(idx, embeddings)
            total += float(loss.detach()) * len(rows)
            docs += len(rows)
        bertgcn.bank.copy_(encode_bank())
        val_pred = predict("val").argmax(1)
        scores = accuracy_and_macro_f1(labels["val"], val_pred)
        record = {"epoch": epoch, "train_loss": total / docs, "val_accuracy": scores["accuracy"],
                  "val_macro_f1": scores["macro_f1"], "seconds": round(time.perf_counter() - epoch_start, 2)}
        history.append(record)
        echo(f"train: BertGCN epoch {epoch}: loss={record['train_loss']:.4f} val_accuracy={scores['accuracy']:.4f} "
             f"val_macro_f1={scores['macro_f1']:.4f}, {record['seconds']:.0f}s")
        if scores["macro_f1"] > best_f1:
            best_f1, best_epoch, bad = scores["macro_f1"], epoch, 0
            best_state = copy.deepcopy((model.state_dict(), head.state_dict(), bertgcn.state_dict()))
        else:
            bad += 1
            if bad >= config.loop.patience:
                break
    model.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    bertgcn.load_state_dict(best_state[2])
    for split in ("val", "test"):
        np.save(ctx.output(f"logits_{split}.npy"), predict(split))
    bank = bertgcn.bank.float().cpu().numpy()
    for split in splits:
        np.save(ctx.output(f"embeddings_{split}.npy"), bank[offsets[split]: offsets[split] + len(texts[split])])
    ctx.output("history.jsonl", rows=len(history)).write_text("".join(json.dumps(h) + "\n" for h in history))
    return {
        "method": "bertgcn", "loss": None, "has_head": True, "best_epoch": best_epoch, "epochs_run": len(history),
        "stopped_early": len(history) < config.loop.epochs,
        "best_val": {k: v for k, v in history[best_epoch - 1].items() if k.startswith("val_")},
        "val_macro_silhouette": (silhouette(bank[offsets["val"]:offsets["test"]], labels["val"]) or {}).get(
            "macro_silhouette"),
        "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in history])), 2),
        "total_seconds": round(time.perf_counter() - started, 1),
        "graph": {"nodes": graph.num_nodes, "words": graph.num_words, "build_seconds": round(build_seconds, 2)},
        "device": str(device),
        "peak_rss_mb": peak_rss_mb(),
    }
