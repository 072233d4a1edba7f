import csv
import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from pipeline.errors import GlossError
from pipeline.tuning.objective import PARAMS_ATTR, PRUNED_AT_ATTR, epoch_reporter
from pipeline.tuning.outputs import PLOTS, best_record, read_best, write_best, write_plots, write_trials_csv

LR = FloatDistribution(1e-5, 1e-4, log=True)
SIGMA = CategoricalDistribution(["sqrt", "dicm", "range"])
SIGMA_VALUE = FloatDistribution(0.01, 10.0, log=True)


def _trial(value, lr, sigma, state=TrialState.COMPLETE):
    params = {"lr": lr, "sigma": "range" if isinstance(sigma, float) else sigma}
    distributions = {"lr": LR, "sigma": SIGMA}
    if isinstance(sigma, float):
        params["sigma_value"], distributions["sigma_value"] = sigma, SIGMA_VALUE
    return create_trial(state=state, value=value if state == TrialState.COMPLETE else None, params=params,
                        distributions=distributions, intermediate_values={1: value or 0.0},
                        user_attrs={PARAMS_ATTR: {"lr": lr, "sigma": sigma}, "best_epoch": 1})


def _study(*trials):
    study = optuna.create_study(direction="maximize")
    for trial in trials:
        study.add_trial(trial)
    return study


def test_best_json_trials_csv_and_every_plot(tmp_path, saved_figures):
    study = _study(_trial(0.7, 2e-5, "sqrt"), _trial(0.8, 5e-5, 0.5), _trial(0.75, 3e-5, 2.0),
                   _trial(None, 9e-5, "dicm", TrialState.PRUNED))
    record = best_record(study, loss="gloss+ce", monitor="val_macro_f1", epochs=2, identity_hash="ab" * 32)
    assert record["trial"] == 1 and record["value"] == 0.8 and record["params"] == {"lr": 5e-5, "sigma": 0.5}
    assert record["trials"] == {"complete": 3, "pruned": 1}
    write_best(tmp_path / "best.json", record)
    assert read_best(tmp_path / "best.json")["params"]["sigma"] == 0.5
    write_trials_csv(study, tmp_path / "trials.csv", ["lr", "sigma"])
    rows = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert [r["state"] for r in rows] == ["complete"] * 3 + ["pruned"] and rows[3]["value"] == ""
    written, notes = write_plots(study, tmp_path, ["sigma", "sigma_value"])
    assert written == [PLOTS["history"], PLOTS["importances"], PLOTS["sigma"]] and notes == []
    assert all((tmp_path / name).stat().st_size > 1000 for name in written)
    history, importances, sigma = saved_figures
    [ax] = history.axes  # each complete trial's value at its number (the pruned one has none), the best so far
    points = [c.get_offsets().tolist() for c in ax.collections if c.get_label() == "Objective Value"]
    assert points == [[[0.0, 0.7], [1.0, 0.8], [2.0, 0.75]]]
    [best] = [line for line in ax.get_lines() if line.get_label() == "Best Value"]
    assert list(best.get_ydata())[:3] == [0.7, 0.8, 0.8]
    assert sorted(t.get_text() for t in importances.axes[0].get_yticklabels()) == ["lr", "sigma", "sigma_value"]
    panels = {ax.get_xlabel(): ax for ax in sigma.axes if ax.get_xlabel()}
    assert sorted(panels) == ["sigma", "sigma_value"]  # the sigma parameters only, not lr
    assert panels["sigma_value"].collections[0].get_offsets().tolist() == [[0.5, 0.8], [2.0, 0.75]]


def test_importances_need_two_complete_trials(tmp_path):
    written, notes = write_plots(_study(_trial(0.7, 2e-5, "sqrt")), tmp_path, [])
    assert written == [PLOTS["history"]] and "need 2 or more complete trials" in notes[0]
    assert write_plots(_study(), tmp_path, []) == ([], ["no complete trial: no plots"])
    assert best_record(_study(), loss="ce", monitor="val_macro_f1", epochs=1, identity_hash="0") is None


def test_read_best_refuses_what_is_not_a_best_json(tmp_path):
    with pytest.raises(GlossError, match="run `gloss tune` first"):
        read_best(tmp_path / "best.json")
    (tmp_path / "best.json").write_text(json.dumps({"value": 1}))
    with pytest.raises(GlossError, match="needs 'loss' and 'params'"):
        read_best(tmp_path / "best.json")


def test_epoch_reporter_reports_each_epoch_and_prunes_only_before_the_last():
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    first = study.ask()
    report = epoch_reporter(first, "val_macro_f1", last_epoch=2)
    report(1, {"val_macro_f1": 0.8})
    report(2, {"val_macro_f1": float("nan")})  # not reported
    study.tell(first, 0.8)
    assert study.trials[0].intermediate_values == {1: 0.8}
    second = study.ask()
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 1"):
        epoch_reporter(second, "val_macro_f1", last_epoch=2)(1, {"val_macro_f1": 0.1})
    assert second.user_attrs[PRUNED_AT_ATTR] == 1
    # a trial at its last epoch has spent its budget: reported, never pruned, however bad
    third = study.ask()
    epoch_reporter(third, "val_macro_f1", last_epoch=1)(1, {"val_macro_f1": 0.1})
    assert third.should_prune() and PRUNED_AT_ATTR not in third.user_attrs
