"""The trial objective of ``gloss tune``: sample a space, train through a callable, prune per epoch.

Training is passed in (``train_trial``: the tune stage's trial runner), so this module never imports a
stage. The loop's ``on_epoch_end(epoch, record)`` reports the monitored validation score (val macro-F1
with a head, val macro-silhouette for standalone losses) to the trial after every epoch and raises
``optuna.TrialPruned`` when the pruner says so, but never at the trial's last epoch (a trial that reached it
has spent its budget) and never in a grid trial (every loss sees every grid value for the full epochs, also a
grid trial rerun after a kill, when later trials already set the pruner's median); Optuna then records the
trial as PRUNED.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pipeline.errors import GlossError
from pipeline.tuning.protocol import GRID, OWN, PHASE_ATTR, phase_of
from pipeline.tuning.space import Space
from pipeline.tuning.study import ERROR_ATTR

PARAMS_ATTR = "params"  # trial user attr: the option values of a trial (``{"lr": 3e-5, "sigma": "sqrt"}``)
PRUNED_AT_ATTR = "pruned_at_epoch"

EpochCallback = Callable[[int, dict], None]
# train_trial(trial, option values, on_epoch_end) -> the trial's best validation score
TrainTrial = Callable[[object, dict, EpochCallback], float]


def epoch_reporter(trial, monitor: str, last_epoch: int) -> EpochCallback:
    """``on_epoch_end`` for the loop: report ``record[monitor]`` at step ``epoch``, prune when told before
    ``last_epoch`` (never a grid trial)."""
    import optuna

    prunable = phase_of(trial) != GRID

    def report(epoch: int, record: dict) -> None:
        value = record.get(monitor)
        if value is None or not math.isfinite(float(value)):
            return
        trial.report(float(value), epoch)
        if prunable and epoch < last_epoch and trial.should_prune():
            trial.set_user_attr(PRUNED_AT_ATTR, epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {monitor} {float(value):.4f}")

    return report


def make_objective(space: Space, monitor: str, train_trial: TrainTrial, epochs: int) -> Callable[[object], float]:
    """The function ``study.optimize`` calls: sample ``space``, train for ``epochs``, return the best validation
    score. A trial not queued by the grid is of phase ``own``. A ``GlossError`` (e.g. a diverged loss) is
    recorded on the trial before it fails it."""

    def objective(trial) -> float:
        params = {name: param.suggest(trial) for name, param in space.items()}
        trial.set_user_attr(PARAMS_ATTR, params)
        if PHASE_ATTR not in trial.user_attrs:
            trial.set_user_attr(PHASE_ATTR, OWN)
        try:
            return train_trial(trial, params, epoch_reporter(trial, monitor, epochs))
        except GlossError as exc:
            trial.set_user_attr(ERROR_ATTR, str(exc))
            raise

    return objective
