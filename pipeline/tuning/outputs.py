"""What ``gloss tune`` writes in ``RUN/tune/``: ``best.json``, ``trials.csv`` and PNG plots.

``best.json`` is read by ``gloss compare`` (a ``tuned = "RUN/tune/best.json"`` method entry trains the
tuned parameters over the sweep's seeds): ``params`` are ``gloss train`` option values by option name.
Plots go through ``optuna.visualization.matplotlib``: the optimisation history, the parameter importances
(2 or more complete trials) and, for G-Loss, sigma against the score.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic
from pipeline.tuning.objective import PARAMS_ATTR, PRUNED_AT_ATTR
from pipeline.tuning.protocol import PHASE_ATTR
from pipeline.tuning.study import ERROR_ATTR, RETRY_ATTR, quiet

TUNE_STAGE = "tune"
STUDY_DB = "study.db"
BEST_FILE = "best.json"
TRIALS_CSV = "trials.csv"
TRIALS_DIR = "trials"
TRIAL_FILE = "trial.json"  # in each trial's run directory: its state, parameters and score
PLOTS = {"history": "optimization_history.png", "importances": "param_importances.png", "sigma": "sigma.png"}
BEST_EPOCH_ATTR = "best_epoch"
RUN_DIR_ATTR = "run_dir"


def trial_dir_name(number: int) -> str:
    return f"trial-{number:04d}"


def state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def complete_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_record(study, *, loss: str, monitor: str, epochs: int, identity_hash: str,
                design: dict | None = None) -> dict[str, Any] | None:
    """What ``best.json`` holds: the best complete trial's option values, score, trial number and phase, and
    ``design``: what the study searched (``pipeline.stages.tune.design``)."""
    if not complete_trials(study):
        return None
    best = study.best_trial
    return {
        "study": study.study_name,
        "loss": loss,
        "params": best.user_attrs.get(PARAMS_ATTR, {}),
        "value": best.value,
        "monitor": monitor,
        "trial": best.number,
        "phase": best.user_attrs.get(PHASE_ATTR),
        "best_epoch": best.user_attrs.get(BEST_EPOCH_ATTR),
        "epochs_per_trial": epochs,
        "run_dir": best.user_attrs.get(RUN_DIR_ATTR),
        "optuna_params": best.params,
        "trials": state_counts(study),
        "config_hash": identity_hash,
        "design": design,
    }


def write_best(path: Path, record: dict) -> None:
    write_text_atomic(path, json.dumps(record, indent=2, default=str) + "\n")


def read_best(path: str | Path) -> dict[str, Any]:
    """A ``best.json``, checked to hold ``loss`` and ``params``."""
    from pipeline.errors import GlossError

    path = Path(path)
    if not path.is_file():
        raise GlossError(f"{path} not found: run `gloss tune` first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GlossError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict) or "loss" not in data:
        raise GlossError(f"{path}: not a `gloss tune` best.json (needs 'loss' and 'params')")
    return data


def write_trials_csv(study, path: Path, param_names: list[str]) -> None:
    """One row per trial: number, phase (grid or own), state, value (complete trials), option values, best/pruned epoch, retry, error, seconds."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        params = trial.user_attrs.get(PARAMS_ATTR, {})
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else None
        complete = trial.state.name == "COMPLETE"  # a pruned trial's value is only its last report
        rows.append({"trial": trial.number, "phase": trial.user_attrs.get(PHASE_ATTR),
                     "state": trial.state.name.lower(),
                     "value": trial.value if complete else None,
                     **{name: params.get(name) for name in param_names},
                     "best_epoch": trial.user_attrs.get(BEST_EPOCH_ATTR),
                     "pruned_at_epoch": trial.user_attrs.get(PRUNED_AT_ATTR),
                     "retry_of": trial.user_attrs.get(RETRY_ATTR), "error": trial.user_attrs.get(ERROR_ATTR),
                     "seconds": None if seconds is None else round(seconds, 1),
                     "run_dir": trial.user_attrs.get(RUN_DIR_ATTR)})
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=["trial", "phase", "state", "value", *param_names, "best_epoch",
                                              "pruned_at_epoch", "retry_of", "error", "seconds", "run_dir"])
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())


def _save(axes, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    first = np.asarray(axes).ravel()[0]
    figure = first.figure
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_plots(study, out_dir: Path, sigma_names: list[str]) -> tuple[list[str], list[str]]:
    """The PNG plots that the study's trials allow; returns (files written, one note per plot skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    complete = complete_trials(study)
    written, notes = [], []
    with quiet(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Some regimes")  # importances of few trials: expected
        warnings.filterwarnings("ignore", message="Target and region quantiles")  # likewise
        warnings.filterwarnings("ignore", message="Attempting to set identical low and high xlims")  # a one-value slice
        if complete:
            _save(plots.plot_optimization_history(study), out_dir / PLOTS["history"])
            written.append(PLOTS["history"])
        else:
            notes.append("no complete trial: no plots")
            return written, notes
        if len(complete) >= 2 and _varied(complete):
            _save(plots.plot_param_importances(study), out_dir / PLOTS["importances"])
            written.append(PLOTS["importances"])
        else:
            notes.append(f"parameter importances need 2 or more complete trials with varied parameters "
                         f"(have {len(complete)})")
        present = [name for name in sigma_names if any(name in t.params for t in complete)]
        if present:
            _save(plots.plot_slice(study, params=present), out_dir / PLOTS["sigma"])
            written.append(PLOTS["sigma"])
    return written, notes


def _varied(trials: list) -> bool:
    """Whether some parameter present in every trial takes two values (importances need one)."""
    shared = set.intersection(*(set(t.params) for t in trials))
    return any(len({repr(t.params[name]) for t in trials}) > 1 for name in shared)
