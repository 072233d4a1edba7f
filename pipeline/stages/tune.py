"""``gloss tune``: an Optuna study of one loss's hyperparameters (G-Loss-O: sigma, lr, lambda, gamma; the same
budget for every loss), on a run directory that has ``prepare`` (and ``embed`` when a corpus sigma heuristic
may be picked).

Outputs (``RUN/tune/``): ``study.db`` (SQLite; a killed tune continues where it stopped), ``best.json``
(option values, score, trial), ``trials.csv``, PNG plots, ``manifest.json``, and ``trials/trial-NNNN/``:
one run directory per trial (``prepare``/``embed`` linked to the run's own, ``train/`` of a complete trial,
``trial.json`` with its state). Trials train with the options of ``gloss train`` but for ``--tune-epochs``
epochs and with no test embeddings or logits: test data is never looked at while tuning; only the runs
``gloss compare`` trains from ``best.json`` are evaluated on test. The median pruner reads the monitored
validation score after every epoch (val macro-F1 with a head, val macro-silhouette for standalone losses);
a pruned or failed trial keeps ``trial.json`` and its ``history.jsonl`` and nothing else.
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
from pipeline.tuning.space import Space, corpus_heuristics, describe_space, load_space
from pipeline.tuning.study import ERROR_ATTR, done, open_study, quiet, requeue_interrupted, study_name

STAGE = out.TUNE_STAGE
DEFAULTS_ATTR = "defaults"  # trial user attr of trial 0: it runs the command line's values


@dataclass
class TuneConfig:
    """A study: the train options of every trial, the budget, the space file, sampler and pruner settings."""

    train: train_stage.TrainConfig
    trials: int = options.TUNE_TRIALS
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
    if config.trials < 1:
        raise GlossError(f"--trials {config.trials}: a study needs at least 1 trial")
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
    train_stage.check_config(trial_config(config, {}))


def trial_config(config: TuneConfig, params: dict) -> train_stage.TrainConfig:
    """The train config of a trial: the study's options, its parameter values, the epoch budget, no test."""
    sections = {"loop": replace(config.train.loop, epochs=config.trial_epochs), "objective": config.train.objective}
    for name, value in params.items():
        section, key = options.TUNE_PARAM_FIELDS[name]
        sections[section] = replace(sections[section], **{key: value})
    return replace(config.train, write_test_outputs=False, **sections)


def base_values(train: train_stage.TrainConfig, space: Space) -> dict:
    """The command line's value of each tuned parameter (trial 0; by default the paper's)."""
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


def study_config(config: TuneConfig, space: Space, upstream: dict) -> dict:
    """What a study is of (stored in the db; a db of another one is refused): the data and embeddings, the
    trials' train config, the space and the budget settings (not --trials or --timeout)."""
    return {
        "upstream": {stage: manifest.config for stage, manifest in upstream.items()},
        "train": trial_config(config, {}).stage_config(),
        "space": describe_space(space),
        "tune": {"epochs": config.trial_epochs, "seed": config.seed, "pruner_startup": config.pruner_startup,
                 "pruner_warmup": config.pruner_warmup},
    }


def run(config: TuneConfig, run_dir: str | Path, echo: Callable[[str], None] = print) -> dict:
    """Run (or continue) the study of ``config`` in ``RUN/tune``; returns the summary of ``manifest.json``."""
    check_config(config)
    started = time.perf_counter()
    run_dir = Path(run_dir)
    space = load_space(config.train.loss, config.space)
    upstream = {stage: load_manifest(run_dir, stage) for stage in upstream_stages(config, space)}
    # through JSON, as the db stores it (tuples become lists)
    identity = json.loads(json.dumps(config_identity(study_config(config, space, upstream)), default=str))
    digest = sha256_json(identity)
    name = study_name(upstream["prepare"].config["dataset"], config.train.loss, digest)
    tune_dir = run_dir / STAGE
    study = open_study(tune_dir / out.STUDY_DB, name, identity, seed=config.seed, startup=config.pruner_startup,
                       warmup=config.pruner_warmup, heartbeat=config.heartbeat)
    _prepare_study(study, space, config, echo)
    monitor = monitor_of(config.train.loss)
    runner = partial(_train_trial, config=config, run_dir=run_dir, tune_dir=tune_dir, stages=tuple(upstream),
                     monitor=monitor, echo=echo)
    _optimize(study, make_objective(space, monitor, runner), config, monitor, echo)
    summary = _write_outputs(study, config, space, tune_dir, monitor, digest, echo)
    _write_manifest(tune_dir, identity, digest, upstream, summary, time.perf_counter() - started)
    return summary


def _prepare_study(study, space: Space, config: TuneConfig, echo) -> None:
    """Queue killed or interrupted trials again (their directories marked), or trial 0 of a new study."""
    for trial in requeue_interrupted(study):
        folder = trial.user_attrs.get(out.RUN_DIR_ATTR)
        if folder and Path(folder).is_dir():
            _clear_partial(Path(folder))
            if _trial_state(Path(folder)) in (None, "running"):  # no process of it came back: killed
                _write_trial(Path(folder), trial.number, "killed", trial.user_attrs.get(PARAMS_ATTR, {}))
        echo(f"tune: trial {trial.number} was killed or interrupted; queued again with its parameters")
    if not study.get_trials(deepcopy=False):
        values = base_values(config.train, space)
        fixed: dict = {}
        for name, param in space.items():
            fixed |= param.fixed(values[name])
        with quiet():
            study.enqueue_trial(fixed, user_attrs={DEFAULTS_ATTR: True})
        echo(f"tune: study {study.study_name}: trial 0 runs the command line's values "
             f"({', '.join(f'{k}={v}' for k, v in values.items())})")
    elif done(study):
        echo(f"tune: resuming study {study.study_name}: {done(study)} of {config.trials} trials done")


def _optimize(study, objective, config: TuneConfig, monitor: str, echo) -> None:
    """Run trials until ``config.trials`` are done (complete, pruned or failed) or the timeout passes."""
    from tqdm.auto import tqdm

    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    bar = tqdm(total=config.trials, initial=min(done(study), config.trials), desc="tune", unit="trial",
               disable=None, leave=False)
    finished: list = []
    try:
        while done(study) < config.trials:
            if deadline is not None and time.monotonic() >= deadline:
                echo(f"tune: --timeout {config.timeout:g}s reached after {done(study)} of {config.trials} trials; "
                     "rerun the command to continue")
                break
            with quiet():
                study.optimize(objective, n_trials=1, catch=(GlossError,), gc_after_trial=True,
                               callbacks=[lambda _study, trial: finished.append(trial)])
            best = _best_text(study, monitor)
            echo(f"tune: {_trial_text(finished[-1], monitor)}; {best} [{done(study)}/{config.trials}]")
            bar.n = min(done(study), config.trials)
            bar.set_postfix_str(best)
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


def _write_outputs(study, config: TuneConfig, space: Space, tune_dir: Path, monitor: str, digest: str,
                   echo) -> dict:
    """``trials.csv``, ``best.json`` (when a trial completed) and the plots; the summary of the study."""
    out.write_trials_csv(study, tune_dir / out.TRIALS_CSV, list(space))
    best = out.best_record(study, loss=config.train.loss, monitor=monitor, epochs=config.trial_epochs,
                           identity_hash=digest)
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
            "done": done(study), "budget": config.trials, "best": best, "files": files}


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
