"""Content hashes for files and JSON-able objects (cache keys and manifests)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """The sha256 of an object's canonical JSON form (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- config identity -----------------------------------------------------------------------------------
PLACE_KEYS = ("data_root", "device")  # where a run read its data or ran, not what it computed


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted leaf keys: ``{"loop": {"lr": 1}}`` -> ``{"loop.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    """The dotted leaf keys whose values differ, each as ``key (old -> new)``; a missing key shows as None."""
    old_flat, new_flat = flatten(old), flatten(new)
    keys = sorted(set(old_flat) | set(new_flat))
    return [f"{k} ({old_flat.get(k)!r} -> {new_flat.get(k)!r})" for k in keys if old_flat.get(k) != new_flat.get(k)]


def _identity_value(value: Any) -> Any:
    """An absolute path is reduced to its last part (a model folder's or a run's name)."""
    if isinstance(value, str) and value.startswith("/"):
        return Path(value.rstrip("/")).name
    return value


def config_identity(config: dict, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """What makes two configs the same setting: dotted leaves minus the keys named in ``ignore`` and
    :data:`PLACE_KEYS` (at any depth), absolute paths reduced to their last part."""
    drop = set(ignore) | set(PLACE_KEYS)
    return {k: _identity_value(v) for k, v in flatten(config).items() if k.rsplit(".", 1)[-1] not in drop}


def config_hash(config: dict, ignore: tuple[str, ...] = ()) -> str:
    """The sha256 of :func:`config_identity`."""
    return sha256_json(config_identity(config, ignore))
