import csv
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.manifest import run_stage

OUTPUTS = (
    "inspect.json",
    "summary.txt",
    "degree_histogram.png",
    "homophily_per_class.png",
    "distance_histogram.png",
    "batch_adjacency.png",
    "subgraph_layout.png",
    "edges.csv",
    "graph.graphml",
    "manifest.json",
)
FAST = ("--layout-nodes", "20", "--batches", "2", "--batch-size", "12")


@pytest.fixture(autouse=True)
def one_thread():
    """BLAS/OpenMP single-threaded: the machine is shared and OpenMP spin-waits are slow under load."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def _labels(run: Path, split: str) -> np.ndarray:
    return pd.read_csv(run / "prepare" / f"{split}.csv", keep_default_na=False)["label_id"].to_numpy()


def _clustered(y: np.ndarray, rng, spread: float) -> np.ndarray:
    centres = np.eye(3, 16, dtype=np.float32) * 3.0
    return (centres[y] + spread * rng.normal(size=(len(y), 16))).astype(np.float32)


def fabricate(run: Path) -> None:
    """Fake `embed` and `train` stages: clustered embeddings; the val graph tightens over two epochs."""
    rng = np.random.default_rng(0)
    pretrained = {s: _clustered(_labels(run, s), rng, 2.0) for s in ("train", "val", "test")}
    trained = {s: _clustered(_labels(run, s), rng, 0.3) for s in ("train", "val", "test")}
    val = _labels(run, "val")

    def embed(ctx):
        for split, array in pretrained.items():
            np.save(ctx.output(f"embeddings_{split}.npy"), array)
        return {}

    def train(ctx):
        for split, array in trained.items():
            np.save(ctx.output(f"embeddings_{split}.npy"), array)
        np.save(ctx.output("val_embeddings/epoch-1.npy"), _clustered(val, rng, 1.0))
        np.save(ctx.output("val_embeddings/epoch-2.npy"), _clustered(val, rng, 0.3))
        return {"best_epoch": 2}

    run_stage(run, "embed", {"fake": True}, embed, force=True, echo=lambda _: None)
    run_stage(run, "train", {"fake": True}, train, force=True, echo=lambda _: None)


@pytest.fixture
def run(toy_root, tmp_path) -> Path:
    run = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "prepare",
            "--dataset",
            "toy",
            "--data-root",
            str(toy_root),
            "--val-fraction",
            "0.3",
            "--run-dir",
            str(run),
        ],
    )
    assert result.exit_code == 0, result.output
    fabricate(run)
    return run


def _inspect(*args: str):
    return CliRunner().invoke(main, ["inspect", *FAST, *args])


def test_inspect_run_writes_every_output_and_skips_a_second_run(run):
    full = (
        "--run-dir",
        str(run),
        "--source",
        "trained",
        "--epochs",
        "all",
        "--export",
        "csv,npz,graphml",
        "--k",
        "2",
    )
    result = _inspect(*full)
    assert result.exit_code == 0, result.output
    out = run / "inspect-trained"
    for name in (*OUTPUTS, "edges.npz", "evolution.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not list(run.glob(".inspect.tmp-*"))
    report = json.loads((out / "inspect.json").read_text())
    n = sum(len(_labels(run, s)) for s in ("train", "val", "test"))
    assert report["nodes"] == n and report["k"] == 2 and report["splits"]["val"] == len(_labels(run, "val"))
    assert report["homophily"]["edge_homophily"] == pytest.approx(1.0)  # tight trained clusters
    assert report["knn_vote"]["accuracy"] == 1.0
    lp = report["label_propagation"]
    assert (
        lp["policy"] == "train labels visible"
        and lp["accuracy"] == 1.0
        and set(lp["per_split"]) == {"val", "test"}
    )
    assert report["degree"]["out"]["min"] == report["degree"]["out"]["max"] == 2
    assert report["components"]["purity_weighted"] == 1.0
    assert report["sigma"]["sqrt"] > 0 and report["sigma"]["dicm"] > 0
    assert report["batches"]["num_batches"] == 2 and len(report["batches"]["batches"]) == 2
    assert report["batches"]["accuracy"] == 1.0
    assert report["search"]["backend"] in ("faiss", "torch")
    epochs = report["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]  # 0 = the pre-trained val embeddings
    assert epochs[-1]["edge_homophily"] >= epochs[0]["edge_homophily"]
    assert epochs[-1]["knn_vote_accuracy"] == 1.0
    summary = (out / "summary.txt").read_text()
    assert "edge homophily" in summary and "epoch 2:" in summary and "edge homophily" in result.output

    with open(out / "edges.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["source", "target", "weight", "same_label"] and len(rows) == 1 + n * 2
    edges = np.array([[int(r[0]), int(r[1])] for r in rows[1:]])  # source_to_target: neighbour, node
    assert (np.bincount(edges[:, 1], minlength=n) == 2).all() and not (edges[:, 0] == edges[:, 1]).any()
    graph = nx.read_graphml(out / "graph.graphml")
    assert graph.number_of_nodes() == n and graph.number_of_edges() == n * 2 and graph.is_directed()
    node = graph.nodes["0"]
    assert node["label"] in ("a", "b", "c") and node["split"] == "train" and "component" in node
    with np.load(out / "edges.npz") as npz:
        assert npz["source"].shape == (n * 2,) and npz["label"].shape == (n,)

    again = _inspect(*full)
    assert again.exit_code == 0 and "up to date" in again.output
    changed = _inspect(*full, "--k", "3", "--no-plots", "--export", "none")
    assert changed.exit_code == 0 and "up to date" not in changed.output
    assert json.loads((out / "inspect.json").read_text())["k"] == 3
    assert not (out / "edges.csv").exists() and not list(out.glob("*.png"))


def test_faiss_and_torch_backends_give_the_same_report(run):
    reports = {}
    for backend in ("faiss", "torch"):
        result = _inspect(
            "--run-dir", str(run), "--backend", backend, "--export", "none", "--no-plots", "--force"
        )
        assert result.exit_code == 0, result.output
        reports[backend] = json.loads((run / "inspect" / "inspect.json").read_text())
        assert reports[backend]["search"]["backend"] == backend
        assert not (run / "inspect" / "edges.csv").exists()
    for key in ("homophily", "degree", "components", "knn_vote", "label_propagation"):
        assert reports["faiss"][key] == reports["torch"][key], key


def test_inspect_arbitrary_embeddings(tmp_path):
    rng = np.random.default_rng(1)
    y = np.repeat(np.array(["sport", "news", "tech"]), 15)
    x = _clustered(np.repeat(np.arange(3), 15), rng, 0.5)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(y)))
    out = tmp_path / "inspected"
    result = _inspect(
        "--embeddings",
        str(tmp_path / "x.npy"),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--out",
        str(out),
        "--k",
        "4",
    )
    assert result.exit_code == 0, result.output
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    report = json.loads((out / "inspect.json").read_text())
    assert report["label_names"] == ["news", "sport", "tech"] and report["splits"] == {"all": 45}
    assert report["label_propagation"]["hidden"] == 9  # a seeded 20% held out
    assert report["label_propagation"]["accuracy"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "inspected",
        "labels.csv",
        "x.npy",
    ]  # nothing left over
    again = _inspect(
        "--embeddings",
        str(tmp_path / "x.npy"),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--out",
        str(out),
        "--k",
        "4",
    )
    assert "up to date" in again.output

    np.save(tmp_path / "y.npy", np.repeat(np.arange(3), 15))
    ints = _inspect(
        "--embeddings",
        str(tmp_path / "x.npy"),
        "--labels",
        str(tmp_path / "y.npy"),
        "--out",
        str(tmp_path / "ints"),
        "--k",
        "4",
        "--metric",
        "l2",
        "--export",
        "npz",
        "--no-plots",
    )
    assert ints.exit_code == 0, ints.output
    assert json.loads((tmp_path / "ints" / "inspect.json").read_text())["knn_vote"]["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "either --run-dir"),
        (("--run-dir", "R", "--embeddings", "x.npy"), "either --run-dir"),
        (("--embeddings", "x.npy"), "needs --labels"),
        (("--run-dir", "R", "--out", "o"), "go with --embeddings"),
        (("--run-dir", "R", "--export", "csv,pdf"), "unknown export format 'pdf'"),
        (("--run-dir", "R"), "prepare --run-dir R` first"),
    ],
)
def test_one_line_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _inspect(*args)
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_bad_label_files(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    (tmp_path / "short.txt").write_text("a\nb\n")
    (tmp_path / "blank.txt").write_text("a\nb\n\nc\na\nb\n")
    np.save(tmp_path / "float.npy", np.zeros(6))
    for name, message in (
        ("short.txt", "2 labels for 6 embeddings"),
        ("blank.txt", "empty label at row 3"),
        ("float.npy", "1-D integer array"),
        ("missing.txt", "file not found"),
    ):
        result = _inspect(
            "--embeddings",
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / name),
            "--out",
            str(tmp_path / "o"),
        )
        assert result.exit_code == 1 and message in result.output, (name, result.output)
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() and not (tmp_path / ".scratch").exists()


def test_epochs_need_a_train_stage_with_val_embeddings(run):
    result = _inspect("--run-dir", str(run), "--epochs", "all", "--export", "none", "--no-plots")
    assert result.exit_code == 0, result.output  # the fabricated train stage has them
    epochs = json.loads((run / "inspect" / "inspect.json").read_text())["epochs"]
    assert all(
        e["k"] == len(_labels(run, "val")) - 1 for e in epochs
    )  # k = 10 capped for a 9-document val split
    (run / "train" / "manifest.json").unlink()
    result = _inspect("--run-dir", str(run), "--epochs", "all")
    assert result.exit_code == 1 and "gloss train --run-dir" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error(run):
    result = _inspect("--run-dir", str(run), "--device", "cuda")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --device cuda: CUDA is not available on this machine"
    assert not (run / "inspect").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inspect_on_cuda_matches_cpu(run):
    reports = {}
    for device in ("cpu", "cuda"):
        result = _inspect(
            "--run-dir", str(run), "--device", device, "--export", "none", "--no-plots", "--force"
        )
        assert result.exit_code == 0, result.output
        reports[device] = json.loads((run / "inspect" / "inspect.json").read_text())
    assert reports["cuda"]["device"].startswith("cuda")
    assert reports["cuda"]["search"]["backend"] in ("faiss-gpu", "torch")
    for key in ("homophily", "degree", "components", "knn_vote"):
        assert reports["cpu"][key] == reports["cuda"][key], key
    assert reports["cpu"]["label_propagation"]["accuracy"] == reports["cuda"]["label_propagation"]["accuracy"]


def test_corpus_sigma_matches_the_heuristics():
    from graphs.sigma import sigma_dicm, sigma_sqrt_median
    from pipeline.inspection.analyse import corpus_sigma

    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(2))
    y = torch.arange(40) % 2
    z = torch.nn.functional.normalize(x.double(), dim=-1)
    s = corpus_sigma(z, y, seed=0)
    assert s["sqrt"] == pytest.approx(sigma_sqrt_median(z)) and s["dicm"] == pytest.approx(sigma_dicm(z, y))
    assert corpus_sigma(z, torch.zeros(40, dtype=torch.long), seed=0)["dicm"] is None


def test_trained_inspection_has_its_own_folder(run):
    quick = ("--run-dir", str(run), "--export", "none", "--no-plots", "--k", "2")
    assert _inspect(*quick).exit_code == 0
    pretrained = (run / "inspect" / "inspect.json").read_text()
    result = _inspect(*quick, "--source", "trained")
    assert result.exit_code == 0, result.output
    assert (run / "inspect" / "inspect.json").read_text() == pretrained
    trained = json.loads((run / "inspect-trained" / "inspect.json").read_text())
    assert trained["config"]["source"] == "trained" and json.loads(pretrained)["config"]["source"] == "pretrained"
