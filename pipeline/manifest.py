"""Stage manifests: what a stage read, how it was configured, and what it wrote.

Every stage writes ``RUN/<stage>/`` with its outputs and a ``manifest.json``. A stage is run through
:func:`run_stage`, which

* computes a cache key from the resolved config and the sha256 of every input (upstream manifests or
  raw files) and skips the stage when an existing manifest has the same key and its outputs exist;
* lets the stage write into a temporary sibling directory, then hashes and describes every output,
  writes the manifest last and moves the directory into place, so an interrupted stage leaves no
  manifest and no half-written outputs;
* offers a persistent scratch directory (``RUN/.scratch/<stage>``) for checkpoints of long stages,
  removed once the stage has finished; a failed stage keeps it only when it holds files (checkpoints
  for ``--resume``), so no empty ``.scratch/`` folders are left behind;
* removes the run directory (and the parents it made) again when the first stage to write there fails,
  so a refused input leaves nothing behind;
* says in one line which dotted config keys changed when it replaces an earlier result of the stage
  (an explicit run directory may hold several variants in turn);
* records ``config_hash`` (:func:`pipeline.hashing.config_hash` of the config; for ``train`` without
  the training seed, so replicates share it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.artifacts import TRAIN_STAGE, TRAINING_SEED
from pipeline.artifacts import scratch_dir as stage_scratch_dir
from pipeline.errors import GlossError
from pipeline.hashing import config_differences, config_hash, sha256_file, sha256_json
from pipeline.resources import peak_rss_mb

logger = logging.getLogger("gloss")

MANIFEST = "manifest.json"


@dataclass
class Manifest:
    """A finished stage's manifest, read from ``RUN/<stage>/manifest.json``."""

    stage_dir: Path
    data: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.stage_dir / MANIFEST

    @property
    def config(self) -> dict[str, Any]:
        return self.data["config"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.data.get("summary", {})

    def output(self, name: str) -> Path:
        """The absolute path of output ``name``; a one-line error when the stage did not write it."""
        outputs = self.data.get("outputs", {})
        if name not in outputs:
            raise GlossError(f"{self.path}: no output named '{name}' (has: {', '.join(sorted(outputs))})")
        return self.stage_dir / outputs[name]["path"]

    def sha256(self) -> str:
        return sha256_file(self.path)


@dataclass
class StageContext:
    """What a stage body gets: where to write, and where to keep checkpoints between attempts."""

    stage: str
    run_dir: Path
    out_dir: Path
    scratch_dir: Path
    config: dict[str, Any]
    descriptions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def output(self, relpath: str, **description: Any) -> Path:
        """Register an output file (relative to the stage directory) and return where to write it."""
        path = self.out_dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        self.descriptions[relpath] = description
        return path


def load_manifest(run_dir: str | Path, stage: str) -> Manifest:
    """Read an upstream stage's manifest, or fail with the command that would create it."""
    stage_dir = Path(run_dir) / stage
    path = stage_dir / MANIFEST
    if not path.is_file():
        raise GlossError(f"{path} not found: run `gloss {stage} --run-dir {run_dir}` first")
    try:
        return Manifest(stage_dir, json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise GlossError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _describe(path: Path) -> dict[str, Any]:
    """sha256 and size, plus shape/dtype for arrays."""
    info: dict[str, Any] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    if path.suffix == ".npy":
        import numpy as np

        array = np.load(path, mmap_mode="r")
        info.update(shape=list(array.shape), dtype=str(array.dtype))
    return info


def _previous(stage_dir: Path) -> dict | None:
    """The manifest a stage left in ``stage_dir`` earlier, if it is readable."""
    path = stage_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _is_current(stage_dir: Path, data: dict | None, cache_key: str) -> Manifest | None:
    if data is None or data.get("cache_key") != cache_key:
        return None
    if not all((stage_dir / out["path"]).is_file() for out in data.get("outputs", {}).values()):
        return None
    return Manifest(stage_dir, data)


def _replacing(stage: str, stage_dir: Path, previous: dict, config: dict, inputs: dict) -> str:
    """One line naming what changed since the result a stage is about to replace."""
    changed = config_differences(previous.get("config", {}), config)
    if changed:
        return f"{stage}: config changed since {stage_dir} was written: {', '.join(changed)}; replacing it"
    old_inputs = previous.get("inputs", {})
    moved = [k for k in sorted(set(old_inputs) | set(inputs))
             if old_inputs.get(k, {}).get("sha256") != inputs.get(k, {}).get("sha256")]
    if moved:
        return f"{stage}: inputs changed since {stage_dir} was written: {', '.join(moved)}; replacing it"
    return f"{stage}: replacing {stage_dir}"


def _inputs(upstream: dict[str, Manifest], input_files: dict[str, Path]) -> dict[str, dict[str, str]]:
    """Each input's kind, absolute path and sha256 (the sha256s are part of the cache key)."""
    manifests = {name: {"kind": "manifest", "path": str(m.path.resolve()), "sha256": m.sha256()}
                 for name, m in upstream.items()}
    files = {name: {"kind": "file", "path": str(Path(p).resolve()), "sha256": sha256_file(p)}
             for name, p in input_files.items()}
    return manifests | files


def _drop_empty_scratch(scratch_dir: Path) -> None:
    """Remove ``RUN/.scratch/<stage>`` and ``RUN/.scratch`` when empty (checkpoints stay for --resume)."""
    for folder in (scratch_dir, scratch_dir.parent):
        try:
            folder.rmdir()
        except OSError:  # not empty, or already gone
            pass


def _drop_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first) where empty: a failed first stage leaves no empty run directory."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (checkpoints for --resume, an earlier stage), or already gone
            return


def run_stage(
    run_dir: str | Path,
    stage: str,
    config: dict[str, Any],
    body: Callable[[StageContext], dict[str, Any] | None],
    *,
    upstream: dict[str, Manifest] | None = None,
    input_files: dict[str, Path] | None = None,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> Manifest:
    """Run ``body`` as stage ``stage`` of ``run_dir`` unless an identical run already finished.

    Args:
        run_dir: the run directory; the stage writes ``run_dir/stage``.
        config: the resolved, JSON-able configuration of the stage (part of the cache key).
        body: writes its outputs through :meth:`StageContext.output` and returns a JSON-able summary.
        upstream: manifests this stage reads (their sha256 is part of the cache key).
        input_files: raw input files (their sha256 is part of the cache key).
        force: rerun even when an identical run finished.
    """
    run_dir = Path(run_dir)
    inputs = _inputs(upstream or {}, input_files or {})
    cache_key = _cache_key(stage, config, inputs)
    stage_dir = run_dir / stage
    previous = _previous(stage_dir)
    current = _is_current(stage_dir, previous, cache_key)
    if current is not None and not force:
        echo(f"{stage}: up to date in {stage_dir} (same config and inputs), skipped; --force reruns it")
        return current
    if previous is not None and current is None:
        echo(_replacing(stage, stage_dir, previous, config, inputs))

    created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # removed again if the body fails
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GlossError(f"cannot create the run directory {run_dir} ({exc.strerror})") from None
    for stale in run_dir.glob(f".{stage}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    out_dir = run_dir / f".{stage}.tmp-{os.getpid()}"
    out_dir.mkdir()
    scratch_dir = stage_scratch_dir(run_dir, stage)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    context = StageContext(stage, run_dir, out_dir, scratch_dir, config)
    started = time.perf_counter()
    try:
        summary = body(context) or {}
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        _drop_empty_scratch(scratch_dir)
        _drop_empty(created)
        raise
    outputs = {}
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out_dir))
        outputs[rel] = {"path": rel, **_describe(path), **context.descriptions.get(rel, {})}
    manifest = {
        "stage": stage,
        "gloss_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "cache_key": cache_key,
        "config_hash": config_hash(config, ignore=(TRAINING_SEED,) if stage == TRAIN_STAGE else ()),
        "config": config,
        "inputs": inputs,
        "outputs": outputs,
        "summary": summary,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    _swap_into_place(out_dir, stage_dir)
    shutil.rmtree(scratch_dir, ignore_errors=True)
    _drop_empty_scratch(scratch_dir)
    echo(f"{stage}: wrote {stage_dir} in {manifest['wall_seconds']:.1f}s")
    return Manifest(stage_dir, manifest)


def _cache_key(stage: str, config: dict[str, Any], inputs: dict[str, dict[str, str]]) -> str:
    return sha256_json({"stage": stage, "config": config, "inputs": {k: v["sha256"] for k, v in inputs.items()}})


def current_stage(run_dir: str | Path, stage: str, config: dict[str, Any], *,
                  upstream: dict[str, Manifest] | None = None) -> Manifest | None:
    """The finished ``stage`` of ``run_dir`` with this config and these inputs (what :func:`run_stage` would
    skip), or ``None``."""
    stage_dir = Path(run_dir) / stage
    key = _cache_key(stage, config, _inputs(upstream or {}, {}))
    return _is_current(stage_dir, _previous(stage_dir), key)


def _swap_into_place(new_dir: Path, stage_dir: Path) -> None:
    """Replace ``stage_dir`` by ``new_dir`` with renames only (the manifest is already inside)."""
    old_dir = stage_dir.with_name(f".{stage_dir.name}.old-{os.getpid()}")
    if stage_dir.exists():
        stage_dir.rename(old_dir)
    new_dir.rename(stage_dir)
    shutil.rmtree(old_dir, ignore_errors=True)
