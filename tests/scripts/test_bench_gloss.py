"""scripts/bench_gloss.py's bank-index cases on a CPU without running them: the mixture rows and the summary keys."""

import types

import pytest
import torch

from tests.scripts.script_module import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_gloss")


def test_bank_rows_are_unit_rows_near_their_centres(bench):
    centres = torch.nn.functional.normalize(torch.randn(4, 384, generator=torch.Generator().manual_seed(0)), dim=1)
    rows, labels = bench._bank_rows(centres, torch.tensor([0, 1, 2, 3]), 250_001, seed=0)  # three chunks
    assert rows.shape == (250_001, 384) and torch.allclose(rows.norm(dim=1), torch.ones(250_001), atol=1e-5)
    cos = (rows * centres[labels]).sum(1)  # labels are the centres' indices here
    assert 0.75 < float(cos.mean()) < 0.85  # 1 / sqrt(1 + 0.75^2) = 0.8


def _entry(nprobe, ms, recall):
    timing = {"median_s": ms / 1000, "cpu_median_s": ms / 2000}
    return {"nprobe": nprobe, "recall_at_10": recall, "search": timing, "step": timing}


def test_bank_summary_names_the_default_nprobe_and_the_overheads(bench):
    results = {("bank1m", "flat"): {"nprobe_default": 8, "nprobe_sweep": [_entry(None, 2000.0, 1.0)]},
               ("bank1m", "ivf"): {"nprobe_default": 8, "nlist": 4000, "ivf_build_s": 1.0,
                                   "nprobe_sweep": [_entry(4, 50.0, 0.8), _entry(8, 80.0, 0.99)]}}
    step = {"median_s": 40.0, "cpu_median_s": 20.0}
    summary = bench._bank_summary(results, step, types.SimpleNamespace(threads=1))
    assert summary["bank1m_ms_B128"] == 80.0 and summary["overhead_bank1m_B128"] == 0.002
    assert summary["bank1m_flat_ms_B128"] == 2000.0 and summary["bank1m_ivf"]["recall_at_10"] == 0.99
    assert summary["bank1m_ivf"]["by_nprobe"]["4"]["recall_at_10"] == 0.8 and summary["nprobe_default"] == 8
