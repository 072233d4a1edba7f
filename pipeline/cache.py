"""A content-addressed cache shared by every run: ``$GLOSS_CACHE`` (default ``~/.cache/gloss``).

An entry is a folder ``CACHE/<kind>/<key>/`` holding whatever its writer put there plus ``meta.json``
(kind, the parts of the key, when and how large). The key is the sha256 of the canonical JSON of the parts
(:func:`pipeline.hashing.sha256_json`), so equal parts find the same entry from any run directory. An entry
is written into a temporary sibling and renamed into place, so a folder with ``meta.json`` is complete; two
processes writing the same entry at once both succeed (the second drops its copy).

Kinds in use (``pipeline.options.CACHE_KINDS``): ``embeddings`` (``gloss embed``: pre-trained pooled
embeddings of a list of texts, keyed by the encoder files' hash, pooling, max length, precision and the
texts' hash; ``--train-layers 0`` reads the same entries), ``frozen-layers`` (``--train-layers N``: per-token
float16 states of the frozen lower layers, ``states.npy`` [tokens, H] unpadded plus ``offsets.npy`` [N + 1],
keyed by the encoder files' hash, the layer split, max length, the texts' hash and the dtype;
:mod:`pipeline.training.partial`; computing them fills the ``embeddings`` entry of the same texts too) and
``encoder-hash`` (the
hash of a model folder's files, keyed by their paths, sizes and modification times, so the files are read once).
The texts of an ``embeddings`` or ``frozen-layers`` entry are the union of ``train`` and ``val`` (the same for
every validation split of a dataset) or one other split (:mod:`pipeline.cache_groups`).
``gloss cache list`` shows the entries, ``gloss cache clear [--kind KIND]`` removes them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.hashing import sha256_file, sha256_json
from pipeline.options import CACHE_ENCODER_HASH

CACHE_ENV = "GLOSS_CACHE"
META = "meta.json"


def cache_root() -> Path:
    """``$GLOSS_CACHE``, else ``~/.cache/gloss``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gloss")


def entry_dir(kind: str, parts: dict[str, Any]) -> Path:
    """Where the entry of ``parts`` lives (whether or not it exists)."""
    return cache_root() / kind / sha256_json({"kind": kind, **parts})


def lookup(kind: str, parts: dict[str, Any]) -> Path | None:
    """The folder of a complete entry, or ``None``."""
    folder = entry_dir(kind, parts)
    return folder if (folder / META).is_file() else None


def store(kind: str, parts: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """Create the entry of ``parts``: ``write(folder)`` fills a temporary folder that is renamed into place."""
    folder = entry_dir(kind, parts)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        meta = {"kind": kind, "parts": parts, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "bytes": size}
        (tmp / META).write_text(json.dumps(meta, indent=1, default=str) + "\n")
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same entry first
            if lookup(kind, parts) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def get_or_create(kind: str, parts: dict[str, Any], write: Callable[[Path], None]) -> tuple[Path, bool]:
    """The entry of ``parts``, created with ``write`` when missing; and whether it was already there."""
    found = lookup(kind, parts)
    if found is not None:
        return found, True
    return store(kind, parts, write), False


def entries(kind: str | None = None) -> list[dict[str, Any]]:
    """The complete entries (their ``meta.json`` plus ``path``), oldest first."""
    root = cache_root()
    found = []
    for meta in sorted(root.glob(f"{kind or '*'}/*/{META}")):
        try:
            data = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found.append({**data, "path": str(meta.parent)})
    return sorted(found, key=lambda e: e.get("created", ""))


def clear(kind: str | None = None) -> tuple[int, int]:
    """Remove every entry (of ``kind``), half-written ones too; returns (entries removed, bytes freed)."""
    root = cache_root()
    removed = entries(kind)
    for folder in root.glob(f"{kind or '*'}/*"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
    for folder in root.glob(kind or "*"):
        try:
            folder.rmdir()
        except OSError:
            pass
    return len(removed), sum(int(e.get("bytes", 0)) for e in removed)


def folder_hash(folder: str | Path) -> str:
    """The sha256 of a folder's files (relative paths and contents), read once per version of the files:
    the result is cached under kind ``encoder-hash`` by the files' paths, sizes and modification times."""
    folder = Path(folder).resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    stats = [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    parts = {"folder": str(folder), "files": stats}
    found = lookup(CACHE_ENCODER_HASH, parts)
    if found is not None:
        return json.loads((found / "hash.json").read_text())["sha256"]
    digest = sha256_json([[rel, sha256_file(folder / rel)] for rel, _, _ in stats])

    def write(tmp: Path) -> None:
        (tmp / "hash.json").write_text(json.dumps({"sha256": digest}) + "\n")

    store(CACHE_ENCODER_HASH, parts, write)
    return digest
