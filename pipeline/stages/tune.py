"""``gloss tune``: an Optuna study of one loss's hyperparameters (G-Loss-O: sigma, lambda, gamma; the same
protocol and budget for every loss), on a run directory that has ``prepare`` (and ``embed`` when a corpus sigma
heuristic may be picked).

The protocol (:mod:`pipeline.tuning.protocol`): phase 1 runs one trial per value of a learning-rate grid every
loss shares (``--lr-grid``; ``--head-lr-grid`` at ``--train-layers 0``), the loss's own parameters at the
command line's values; phase 2 runs ``--trials N`` trials of the loss's own parameters (a scrambled Sobol
sequence) at the best grid value. Trials train under a schedule that does not depend on ``--epochs``
(``constant`` or ``multistep``), so a trial of ``--tune-epochs E`` is exactly the first E epochs of a final
run; the median pruner may stop a trial after an epoch before its last.

Outputs (``RUN/tune/``): ``study.db`` (SQLite; a killed tune continues where it stopped), ``best.json``
(option values, score, trial, and the protocol: what was searched), ``trials.csv`` (one row per trial, with
its phase), PNG plots, ``manifest.json``, and ``trials/trial-NNNN/``: one run directory per trial
(``prepare``/``embed`` linked to the run's own, ``train/`` of a complete trial, ``trial.json`` with its
state). Trials train with the options of ``gloss train`` but for ``--tune-epochs`` epochs, on the train and
validation splits only: the test split is never read, encoded or scored while tuning; only the runs
``gloss compare`` trains from ``best.json`` are evaluated on test. A pruned or failed trial keeps
``trial.json`` and its ``history.jsonl`` and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from pipeline import __version__, options
from pipeline.artifacts import HISTORY_FILE, SCRATCH_DIR, TRAIN_STAGE
from pipeline.errors import GlossError
from pipeline.hashing import config_identity, sha256_file, sha256_json
from pipeline.manifest import MANIFEST, load_manifest
from pipeline.stages import train as train_stage
from pipeline.training.objectives import monitor_of
from pipeline.tuning import outputs as out
from pipeline.tuning.objective import PARAMS_ATTR, PRUNED_AT_ATTR, make_objective
from pipeline.tuning.protocol import (
    GRID,
    OWN,
    PHASE_ATTR,
    SAMPLER,
    Protocol,
    grid_sampler,
    make_protocol,
    own_sampler,
    phase_of,
)
from pipeline.tuning.space import Space, corpus_heuristics, describe_space, load_space
from pipeline.tuning.study import ERROR_ATTR, done, open_study, quiet, requeue_interrupted, study_name

STAGE = out.TUNE_STAGE


@dataclass
class TuneConfig:
    """A study: the train options of every trial, the budget, the space file, sampler and pruner settings."""

    train: train_stage.TrainConfig
    trials: int = options.TUNE_TRIALS  # phase 2: trials of the loss's own parameters
    lr_grid: str | None = None  # phase 1 over --lr (default options.TUNE_LR_GRID)
    head_lr_grid: str | None = None  # phase 1 over --head-lr at --train-layers 0 (default options.TUNE_HEAD_LR_GRID)
    epochs: int | None = None  # per trial (default: train.loop.epochs)
    timeout: float | None = None  # seconds; no new trial starts after it
    space: str | None = None  # a TOML file of spaces (default: pipeline/tuning/spaces.toml)
    seed: int = options.TUNE_SEED
    pruner_startup: int = options.TUNE_PRUNER_STARTUP
    pruner_warmup: int = options.TUNE_PRUNER_WARMUP
    heartbeat: int = options.TUNE_HEARTBEAT
    plots: bool = True

    @property
    def trial_epochs(self) -> int:
        return self.epochs if self.epochs is not None else self.train.loop.epochs


def check_config(config: TuneConfig) -> None:
    """One-line errors for a study that cannot run."""
    if config.trials < 0:
        raise GlossError(f"--trials {config.trials}: must be at least 0 (0: the lr grid only)")
    if config.train.method != "finetune":
        raise GlossError(f"--method {config.train.method}: `gloss tune` tunes --method finetune (a --loss)")
    if config.train.unlabeled in options.UNLABELED_SPLITS:
        raise GlossError(f"--unlabeled {config.train.unlabeled}: `gloss tune` never reads the test split "
                         "(give --unlabeled FILE, or tune without it)")
    if config.epochs is not None and config.epochs < 1:
        raise GlossError(f"--tune-epochs {config.epochs}: must be at least 1")
    if config.timeout is not None and config.timeout <= 0:
        raise GlossError(f"--timeout {config.timeout:g}: must be positive (seconds)")
    if config.heartbeat < 1 or config.pruner_startup < 0 or config.pruner_warmup < 0:
        raise GlossError("--heartbeat must be at least 1 and --pruner-startup, --pruner-warmup at least 0")
    schedule = config.train.loop.schedule
    if schedule not in options.CAP_FREE_SCHEDULES:
        raise GlossError(f"--schedule {schedule}: decays to zero at --epochs, so a trial of {config.trial_epochs} "
                         f"epochs would not be the first epochs of a final run; tune (and train the final runs) "
                         f"with --schedule {' or '.join(options.CAP_FREE_SCHEDULES)}")
    train_stage.check_config(trial_config(config, {}))


def trial_config(config: TuneConfig, params: dict) -> train_stage.TrainConfig:
    """The train config of a trial: the study's options, its parameter values, the epoch budget, no test."""
    sections = {"loop": replace(config.train.loop, epochs=config.trial_epochs), "objective": config.train.objective}
    for name, value in params.items():
        section, key = options.TUNE_PARAM_FIELDS[name]
        sections[section] = replace(sections[section], **{key: value})
    return replace(config.train, write_test_outputs=False, **sections)


def base_values(train: train_stage.TrainConfig, space: Space) -> dict:
    """The command line's value of each tuned parameter (the grid trials'; by default the paper's)."""
    values = {}
    for name in space:
        section, key = options.TUNE_PARAM_FIELDS[name]
        values[name] = getattr(getattr(train, section), key)  # per-loss defaults are resolved by the config
    return values


def upstream_stages(config: TuneConfig, space: Space) -> tuple[str, ...]:
    """``prepare``, plus ``embed`` when a trial may use a corpus sigma heuristic."""
    if config.train.loss in options.G_LOSSES and (corpus_heuristics(space) or (
            "sigma" not in space and config.train.objective.reads_corpus_sigma)):
        return ("prepare", "embed")
    return ("prepare",)


def study_config(config: TuneConfig, protocol: Protocol, upstream: dict) -> dict:
    """What a study is of (stored in the db; a db of another one is refused): the data and embeddings, the
    trials' train config, the grid, the own space, the sampler and pruner settings (not the budget N of
    phase 2, --trials, nor --timeout: a study may be continued with more trials)."""
    return {
        "upstream": {stage: manifest.config for stage, manifest in upstream.items()},
        "train": trial_config(config, {}).stage_config(),
        "grid": {"param": protocol.grid_param, "values": list(protocol.grid)},
        "space": describe_space(protocol.own),
        "tune": {"epochs": config.trial_epochs, "seed": config.seed, "sampler": SAMPLER,
                 "pruner_startup": config.pruner_startup, "pruner_warmup": config.pruner_warmup},
    }


def resolve(config: TuneConfig, echo=print) -> tuple[TuneConfig, Protocol]:
    """``config`` with ``--train-layers``/``--precision auto`` resolved (trials train what the study says), and
    its checked protocol."""
    check_config(config)
    config = replace(config, train=train_stage.resolve_protocol(config.train))
    own = load_space(config.train.loss, config.space)
    protocol = make_protocol(config.train.loss, config.train.loop.train_layers, own, lr_grid=config.lr_grid,
                             head_lr_grid=config.head_lr_grid, trials=config.trials, seed=config.seed, echo=echo)
    protocol.grid_trials(base_values(config.train, protocol.own))  # the command line's values fit the space
    return config, protocol


def run(config: TuneConfig, run_dir: str | Path, echo: Callable[[str], None] = print) -> dict:
    """Run (or continue) the study of ``config`` in ``RUN/tune``; returns the summary of ``manifest.json``."""
    started = time.perf_counter()
    config, protocol = resolve(config, echo)
    run_dir = Path(run_dir)
    space = protocol.space
    upstream = {stage: load_manifest(run_dir, stage) for stage in upstream_stages(config, space)}
    # through JSON, as the db stores it (tuples become lists)
    identity = json.loads(json.dumps(config_identity(study_config(config, protocol, upstream)), default=str))
    digest = sha256_json(identity)
    name = study_name(upstream["prepare"].config["dataset"], config.train.loss, digest)
    tune_dir = run_dir / STAGE
    study = open_study(tune_dir / out.STUDY_DB, name, identity, seed=config.seed, startup=config.pruner_startup,
                       warmup=config.pruner_warmup, heartbeat=config.heartbeat)
    _prepare_study(study, protocol, config, echo)
    monitor = monitor_of(config.train.loss)
    runner = partial(_train_trial, config=config, run_dir=run_dir, tune_dir=tune_dir, stages=tuple(upstream),
                     monitor=monitor, echo=echo)
    stopped = _optimize(study, make_objective(space, monitor, runner, config.trial_epochs), config, protocol,
                        monitor, echo)
    summary = _write_outputs(study, config, protocol, tune_dir, monitor, digest, echo)
    _write_manifest(tune_dir, identity, digest, upstream, summary, time.perf_counter() - started)
    if stopped is not None:
        raise GlossError(stopped)
    return summary


def _prepare_study(study, protocol: Protocol, config: TuneConfig, echo) -> None:
    """Queue killed or interrupted trials again (their directories marked), or the grid of a new study."""
    for trial in requeue_interrupted(study, config.heartbeat, echo):
        folder = trial.user_attrs.get(out.RUN_DIR_ATTR)
        if folder and Path(folder).is_dir():
            _clear_partial(Path(folder))
            if _trial_state(Path(folder)) in (None, "running"):  # no process of it came back: killed
                _write_trial(Path(folder), trial.number, "killed", trial.user_attrs.get(PARAMS_ATTR, {}))
        echo(f"tune: trial {trial.number} was killed or interrupted; queued again with its parameters")
    if not study.get_trials(deepcopy=False):
        values = base_values(config.train, protocol.own)
        with quiet():
            for fixed in protocol.grid_trials(values):
                study.enqueue_trial(fixed, user_attrs={PHASE_ATTR: GRID})
        own = ", ".join(f"{k}={v}" for k, v in values.items()) or "none"
        echo(f"tune: study {study.study_name}: {len(protocol.grid)} grid trials ({protocol.grid_param} "
             f"{', '.join(f'{v:g}' for v in protocol.grid)}; own parameters at the command line's values: {own}), "
             f"then {protocol.trials} trials of {', '.join(protocol.own) or 'no parameter'} at the best "
             f"{protocol.grid_param}")
    elif done(study):
        echo(f"tune: resuming study {study.study_name}: {done(study)} of {protocol.budget} trials done")


def best_grid_value(study, protocol: Protocol) -> float | None:
    """The grid value of the best complete grid trial (``None`` when no grid trial completed)."""
    grid = [t for t in out.complete_trials(study) if phase_of(t) == GRID]
    return max(grid, key=lambda t: t.value).params[protocol.grid_param] if grid else None


def _optimize(study, objective, config: TuneConfig, protocol: Protocol, monitor: str, echo) -> str | None:
    """Run the queued trials (the grid, retries), then phase 2's until ``protocol.trials`` of them are done
    (complete, pruned or failed) or the timeout passes. Returns why the study cannot go on, if it cannot."""
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    budget = protocol.budget
    bar = tqdm(total=budget, initial=min(done(study), budget), desc="tune", unit="trial", disable=None, leave=False)
    finished: list = []
    try:
        while True:
            if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                study.sampler = grid_sampler(config.seed)  # queued trials have every value fixed
            elif done(study, OWN) >= protocol.trials:
                return None
            else:
                best = best_grid_value(study, protocol)
                if best is None:
                    return (f"no trial of the {protocol.grid_param} grid completed (see {out.TRIALS_CSV}): nothing to "
                            "fix the learning rate at for the trials of the own parameters")
                study.sampler = own_sampler(protocol, best, len(study.get_trials(deepcopy=False)))
            if deadline is not None and time.monotonic() >= deadline:
                echo(f"tune: --timeout {config.timeout:g}s reached after {done(study)} of {budget} trials; "
                     "rerun the command to continue")
                return None
            with quiet():
                study.optimize(objective, n_trials=1, catch=(GlossError,), gc_after_trial=True,
                               callbacks=[lambda _study, trial: finished.append(trial)])
            best_text = _best_text(study, monitor)
            echo(f"tune: {_trial_text(finished[-1], monitor)}; {best_text} [{done(study)}/{budget}]")
            bar.n = min(done(study), budget)
            bar.set_postfix_str(best_text)
    finally:
        bar.close()


def _best_text(study, monitor: str) -> str:
    complete = out.complete_trials(study)
    if not complete:
        return "no complete trial yet"
    best = max(complete, key=lambda t: t.value)
    return f"best {monitor} {best.value:.4f} (trial {best.number})"


def _trial_text(trial, monitor: str) -> str:
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in trial.user_attrs.get(PARAMS_ATTR, {}).items())
    state = trial.state.name.lower()
    params = f"{phase_of(trial)}: {params}"
    if state == "complete":
        return f"trial {trial.number} complete: {monitor} {trial.value:.4f} ({params})"
    if state == "pruned":
        return f"trial {trial.number} pruned after epoch {trial.user_attrs.get(PRUNED_AT_ATTR)} ({params})"
    return f"trial {trial.number} {state}: {trial.user_attrs.get(ERROR_ATTR, 'see the log')} ({params})"


def _link_upstream(folder: Path, run_dir: Path, stages: tuple[str, ...]) -> None:
    """``folder/<stage>`` -> ``RUN/<stage>`` (relative links), so a trial reads the run's own stages."""
    folder.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        link = folder / stage
        if not link.exists():
            link.symlink_to(os.path.relpath(run_dir / stage, folder), target_is_directory=True)


def _write_trial(folder: Path, number: int, state: str, params: dict, **extra) -> None:
    from pipeline.atomic import write_text_atomic

    record = {"trial": number, "state": state, "params": params, **extra}
    write_text_atomic(folder / out.TRIAL_FILE, json.dumps(record, indent=2, default=str) + "\n")


def _trial_state(folder: Path) -> str | None:
    try:
        return json.loads((folder / out.TRIAL_FILE).read_text()).get("state")
    except (OSError, ValueError):
        return None


def _clear_partial(folder: Path) -> None:
    """What a pruned, failed or killed trial leaves: its ``history.jsonl`` only (no checkpoints, no
    half-written stage), so nothing of it can be mistaken for a result or resumed by a retry."""
    history = folder / SCRATCH_DIR / TRAIN_STAGE / HISTORY_FILE
    if history.is_file():
        shutil.copyfile(history, folder / HISTORY_FILE)
    shutil.rmtree(folder / SCRATCH_DIR, ignore_errors=True)
    for partial_dir in folder.glob(f".{TRAIN_STAGE}.*"):
        shutil.rmtree(partial_dir, ignore_errors=True)


def _train_trial(trial, params: dict, on_epoch_end, *, config: TuneConfig, run_dir: Path, tune_dir: Path,
                 stages: tuple[str, ...], monitor: str, echo) -> float:
    """Train one trial in ``RUN/tune/trials/trial-NNNN`` and return its best epoch's validation score."""
    import optuna

    folder = tune_dir / out.TRIALS_DIR / out.trial_dir_name(trial.number)
    _link_upstream(folder, run_dir, stages)
    trial.set_user_attr(out.RUN_DIR_ATTR, str(folder))
    _write_trial(folder, trial.number, "running", params)
    try:
        manifest = train_stage.run(trial_config(config, params), folder, force=True, on_epoch_end=on_epoch_end,
                                   echo=lambda line: echo(f"[trial {trial.number}] {line}"))
    except optuna.TrialPruned:
        _clear_partial(folder)
        _write_trial(folder, trial.number, "pruned", params, pruned_at_epoch=trial.user_attrs.get(PRUNED_AT_ATTR))
        raise
    except GlossError as exc:
        _clear_partial(folder)
        _write_trial(folder, trial.number, "fail", params, error=str(exc))
        raise
    except BaseException:
        _clear_partial(folder)
        _write_trial(folder, trial.number, "interrupted", params)
        raise
    best_epoch = manifest.summary["best_epoch"]
    value = float(manifest.summary["best_val"][monitor])
    trial.set_user_attr(out.BEST_EPOCH_ATTR, best_epoch)
    _write_trial(folder, trial.number, "complete", params, value=value, monitor=monitor, best_epoch=best_epoch)
    return value


def design(config: TuneConfig, protocol: Protocol) -> dict:
    """What was searched, and how (``best.json`` and the manifest), so a results table can say it."""
    loop = config.train.loop
    return {**protocol.describe(), "epochs_per_trial": config.trial_epochs, "schedule": loop.schedule,
            "train_layers": loop.train_layers, "batch_size": loop.batch_size, "optimizer": loop.optimizer,
            "max_length": config.train.encoder.max_length,
            "pruner": {"name": "MedianPruner", "startup_trials": config.pruner_startup,
                       "warmup_epochs": config.pruner_warmup, "at_last_epoch": False},
            "split": "train and validation of RUN/prepare; test never read"}


def _write_outputs(study, config: TuneConfig, protocol: Protocol, tune_dir: Path, monitor: str, digest: str,
                   echo) -> dict:
    """``trials.csv``, ``best.json`` (when a trial completed) and the plots; the summary of the study."""
    space = protocol.space
    out.write_trials_csv(study, tune_dir / out.TRIALS_CSV, list(space))
    best = out.best_record(study, loss=config.train.loss, monitor=monitor, epochs=config.trial_epochs,
                           identity_hash=digest, design=design(config, protocol))
    files = [out.TRIALS_CSV]
    if best is not None:
        out.write_best(tune_dir / out.BEST_FILE, best)
        files.append(out.BEST_FILE)
    else:
        echo("tune: no trial completed, so no best.json")
    if config.plots:
        sigma = space.get("sigma")
        plots, notes = out.write_plots(study, tune_dir, [sigma.name, sigma.value_name] if sigma else [])
        files += plots
        for note in notes:
            echo(f"tune: {note}")
    return {"study": study.study_name, "loss": config.train.loss, "monitor": monitor, "trials": out.state_counts(study),
            "done": done(study), "budget": protocol.budget, "best": best, "files": files,
            "design": design(config, protocol)}


def _write_manifest(tune_dir: Path, identity: dict, digest: str, upstream: dict, summary: dict,
                    seconds: float) -> None:
    """``RUN/tune/manifest.json``: the study's config, inputs, outputs (sha256) and summary."""
    from pipeline.atomic import write_text_atomic

    outputs = {name: {"path": name, "sha256": sha256_file(tune_dir / name), "bytes": (tune_dir / name).stat().st_size}
               for name in summary["files"]}
    manifest = {
        "stage": STAGE, "gloss_version": __version__, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_hash": digest, "config": identity,
        "inputs": {stage: {"kind": "manifest", "path": str(m.path.resolve()), "sha256": m.sha256()}
                   for stage, m in upstream.items()},
        "outputs": outputs, "summary": summary, "wall_seconds_this_call": round(seconds, 3),
    }
    write_text_atomic(tune_dir / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
