import json

import pytest

from pipeline.compare.spec import read_spec
from pipeline.errors import GlossError

BEST = {"study": "R8-gloss-ce-1a2b3c4d", "loss": "gloss+ce", "value": 0.9, "trial": 4,
        "params": {"lr": 3.5e-05, "sigma": "dicm", "lambda": 0.7, "gamma": 0.55}}


def _spec(tmp_path, method: str) -> list:
    (tmp_path / "tune").mkdir(exist_ok=True)
    (tmp_path / "tune" / "best.json").write_text(json.dumps(BEST))
    spec = tmp_path / "sweep.toml"
    spec.write_text('datasets = ["R8"]\nseeds = [0, 1]\noptions = { epochs = 3, lr = 2e-5 }\n'
                    f'[[methods]]\n{method}\n')
    return read_spec(spec)


def test_a_tuned_entry_trains_the_best_params_over_the_seeds(tmp_path):
    runs = _spec(tmp_path, 'name = "gloss+ce-tuned"\ntuned = "tune/best.json"\noptions = { gamma = 0.6 }')
    assert [r.seed for r in runs] == [0, 1]
    args = runs[0].cli_args()
    value = {flag: args[args.index(flag) + 1] for flag in ("--loss", "--lr", "--sigma", "--lambda", "--gamma")}
    # tuned values win over the shared options; the entry's own options win over the tuned values
    assert value == {"--loss": "gloss+ce", "--lr": "3.5e-05", "--sigma": "dicm", "--lambda": "0.7", "--gamma": "0.6"}


def test_a_tuned_entry_per_dataset_and_its_errors(tmp_path):
    with pytest.raises(GlossError, match="tuned --loss gloss\\+ce, but the entry asks for ce"):
        _spec(tmp_path, 'name = "ce-tuned"\nloss = "ce"\ntuned = "tune/best.json"')
    with pytest.raises(GlossError, match="no best.json for dataset R8"):
        _spec(tmp_path, 'name = "t"\ntuned = { mr = "tune/best.json" }')
    with pytest.raises(GlossError, match="run `gloss tune` first"):
        _spec(tmp_path, 'name = "t"\ntuned = "missing/best.json"')
    [run, _] = _spec(tmp_path, 'name = "t"\ntuned = { R8 = "tune/best.json" }')
    assert ("sigma", "dicm") in run.options
