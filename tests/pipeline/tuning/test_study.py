import time

import optuna
import pytest
from optuna.trial import TrialState

from pipeline.errors import GlossError
from pipeline.tuning.protocol import GRID, PHASE_ATTR
from pipeline.tuning.study import (
    ERROR_ATTR,
    RETRY_ATTR,
    counted,
    done,
    fail_killed_trials,
    open_study,
    requeue_interrupted,
    study_name,
)

IDENTITY = {"train.loop.lr": 2e-5, "train.loop.batch_size": 16, "tune.epochs": 2}


def _open(db, identity=IDENTITY, name="tiny-ce-0000"):
    return open_study(db, name, identity, seed=0, startup=1, warmup=0, heartbeat=1)


def test_study_name_and_reopening(tmp_path):
    assert study_name("R8", "gloss+ce", "1a2b3c4d5e") == "R8-gloss-ce-1a2b3c4d"
    study = _open(tmp_path / "study.db")
    study.enqueue_trial({"lr": 1e-5})
    again = _open(tmp_path / "study.db")
    assert again.user_attrs["config"] == IDENTITY and len(again.trials) == 1
    assert isinstance(again.sampler, optuna.samplers.RandomSampler)  # the grid's; phase 2 sets its own
    assert isinstance(again.pruner, optuna.pruners.MedianPruner)


def test_a_db_of_another_config_is_refused_naming_the_differing_keys(tmp_path):
    _open(tmp_path / "study.db")
    other = {**IDENTITY, "train.loop.batch_size": 8}
    with pytest.raises(GlossError, match=r"another config: train.loop.batch_size \(16 -> 8\)"):
        _open(tmp_path / "study.db", other, name="tiny-ce-1111")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask/tell by hand
def test_interrupted_trials_are_requeued_once_and_failures_of_their_own_count(tmp_path):
    study = _open(tmp_path / "study.db")
    distribution = optuna.distributions.FloatDistribution(1e-5, 1e-4, log=True)
    interrupted = study.ask({"lr": distribution})
    interrupted.set_user_attr(PHASE_ATTR, GRID)
    study.tell(interrupted, state=TrialState.FAIL)
    diverged = study.ask({"lr": distribution})
    diverged.set_user_attr(ERROR_ATTR, "train: the loss diverged")
    study.tell(diverged, state=TrialState.FAIL)
    pruned = study.ask({"lr": distribution})
    study.tell(pruned, state=TrialState.PRUNED)
    assert [counted(t) for t in study.trials] == [False, True, True] and done(study) == 2
    [requeued] = requeue_interrupted(study, heartbeat=1)
    assert requeued.number == interrupted.number
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs[RETRY_ATTR] == interrupted.number
    assert waiting[0].user_attrs[PHASE_ATTR] == GRID  # a rerun keeps its phase
    assert waiting[0].params == {} and study.get_trials()[-1].system_attrs["fixed_params"] == interrupted.params
    assert requeue_interrupted(study, heartbeat=1) == []  # queued once only


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")  # ask()
def test_a_trial_killed_moments_ago_is_failed_and_a_live_one_is_left_running(tmp_path):
    study = _open(tmp_path / "study.db")  # heartbeat 1 s: grace 2 s
    killed, live = study.ask(), study.ask()
    for trial in (killed, live):
        study._storage.record_heartbeat(trial._trial_id)  # both beat just now: neither is stale yet
    lines = []

    def sleep(seconds):  # the live trial's process keeps beating while we wait
        study._storage.record_heartbeat(live._trial_id)
        time.sleep(seconds)

    fail_killed_trials(study, 1, lines.append, sleep=sleep)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {killed.number: TrialState.FAIL, live.number: TrialState.RUNNING}
    assert lines == ["tune: trials 0, 1 are marked running; waiting up to 2s for the heartbeat (a killed "
                     "trial is then rerun, a live one left to its process)"]
