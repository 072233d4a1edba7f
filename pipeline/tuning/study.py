"""The Optuna study of ``gloss tune``: SQLite storage, its name, refusing another config's db, resuming.

A study lives in ``RUN/tune/study.db`` and is named ``<dataset>-<loss>-<first 8 hex digits of the config
hash>``; the config (prepare, train, space, trial budget settings) is stored in the study's user attrs, so a
db written for another config is refused with the keys that differ. Trials send heartbeats: on resuming,
a trial whose heartbeat is older than twice the interval (a killed tune) is failed and queued again with
the same parameters and phase, as is a trial interrupted with Ctrl-C (at most ``options.TUNE_MAX_RETRIES``
times). A trial still marked running is waited for until its heartbeat is that old, so a study resumed at
once after a kill reruns it too, while a trial another live process runs keeps beating.
A trial that failed on its own (a ``GlossError``, e.g. a diverged loss) records the error and counts
towards ``--trials``; so do complete and pruned trials.
"""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from pipeline import options
from pipeline.artifacts import SHORT_HASH, method_slug
from pipeline.errors import GlossError
from pipeline.hashing import config_differences
from pipeline.tuning.protocol import PHASE_ATTR, grid_sampler, phase_of

logger = logging.getLogger("gloss")

CONFIG_ATTR = "config"  # study user attr: the identity of the study's config
ERROR_ATTR = "error"  # trial user attr: why a trial failed on its own (counted, never retried)
RETRY_ATTR = "retry_of"  # trial user attr: the number of the killed or interrupted trial it reruns
RETRIES_ATTR = "retries"


def study_name(dataset: str, loss: str, config_hash: str) -> str:
    """``R8-gloss-ce-1a2b3c4d``."""
    return f"{dataset}-{method_slug(loss)}-{config_hash[:SHORT_HASH]}"


@contextmanager
def quiet():
    """Optuna's experimental-feature warnings (heartbeats, matplotlib plots) are expected here."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _storage(db: Path, heartbeat: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.storages.RDBStorage(f"sqlite:///{db}", heartbeat_interval=heartbeat,
                                      grace_period=grace_period(heartbeat))


def grace_period(heartbeat: int) -> int:
    """Seconds of silence after which a running trial is taken as killed."""
    return 2 * heartbeat


def refuse_other_config(storage, db: Path, name: str, identity: dict) -> None:
    """A one-line error when ``db`` holds a study of another config, naming the keys that differ."""
    import optuna

    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        stored = summary.user_attrs.get(CONFIG_ATTR)
        if summary.study_name == name and stored in (None, identity):
            continue
        differences = config_differences(stored or {}, identity) or [f"study name ({summary.study_name!r} -> {name!r})"]
        raise GlossError(f"{db} holds study '{summary.study_name}' of another config: {', '.join(differences)}; "
                         "tune in another --run-dir, or remove the db to start over")


def open_study(db: Path, name: str, identity: dict, *, seed: int, startup: int, warmup: int, heartbeat: int):
    """Create or load study ``name`` in ``db`` (median pruner), refusing another config's db. Its sampler is
    the grid's (seeded random, for values the queued grid trials leave open); the tune stage sets the
    phase's sampler before each trial (:mod:`pipeline.tuning.protocol`)."""
    import optuna

    db.parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        storage = _storage(db, heartbeat)
        refuse_other_config(storage, db, name, identity)
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True,
            sampler=grid_sampler(seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup),
        )
    if CONFIG_ATTR not in study.user_attrs:
        study.set_user_attr(CONFIG_ATTR, identity)
    return study


def counted(trial) -> bool:
    """Whether a trial uses up the budget: complete, pruned, or failed on its own."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs)


def done(study, phase: str | None = None) -> int:
    """Trials that used up the budget (of ``phase`` only, when given)."""
    return sum(counted(t) for t in study.get_trials(deepcopy=False) if phase is None or phase_of(t) == phase)


def fail_killed_trials(study, heartbeat: int, echo=None, sleep=time.sleep) -> None:
    """Fail the trials whose heartbeat went stale (a killed tune). A trial still marked running but not yet
    stale may belong to a tune killed moments ago: wait until the grace period (``2 * heartbeat`` seconds, as
    the study's storage was opened with) has passed since now (its heartbeat is then at least that old unless
    a live process still sends it), failing it then."""
    import optuna
    from optuna.trial import TrialState

    def running():
        with quiet():
            optuna.storages.fail_stale_trials(study)
        return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    left = running()
    if not left:
        return
    grace = grace_period(heartbeat)
    if echo is not None:
        many = len(left) > 1
        echo(f"tune: trial{'s' if many else ''} {', '.join(str(t.number) for t in left)} "
             f"{'are' if many else 'is'} marked running; waiting up to {grace:.0f}s for the heartbeat (a killed "
             "trial is then rerun, a live one left to its process)")
    deadline = time.monotonic() + grace + 1
    while left and time.monotonic() < deadline:
        sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
        left = running()


def requeue_interrupted(study, heartbeat: int, echo=None) -> list:
    """Fail trials whose heartbeat went stale (a killed tune; :func:`fail_killed_trials`), then queue every
    killed or interrupted trial again with its parameters (once each, at most ``options.TUNE_MAX_RETRIES``
    deep). Returns the trials requeued (frozen, as they were left)."""
    from optuna.trial import TrialState

    fail_killed_trials(study, heartbeat, echo)
    trials = study.get_trials(deepcopy=False)
    rerun = {t.user_attrs.get(RETRY_ATTR) for t in trials}
    requeued = []
    for trial in trials:
        if trial.state != TrialState.FAIL or ERROR_ATTR in trial.user_attrs or trial.number in rerun:
            continue
        depth = int(trial.user_attrs.get(RETRIES_ATTR, 0))
        if depth >= options.TUNE_MAX_RETRIES:
            continue
        study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number, RETRIES_ATTR: depth + 1,
                                                      PHASE_ATTR: phase_of(trial)})
        requeued.append(trial)
    return requeued
