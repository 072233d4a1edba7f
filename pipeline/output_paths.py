"""Output paths checked before any work: a run directory or output file that cannot be created is a one-line
error naming the option, not a traceback after minutes of computing.

The check creates (and at once removes) a temporary folder in the nearest existing folder of the path, so it
holds for any user (root included) and any filesystem (read-only, ``/proc``), and leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipeline.errors import GlossError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def _check_folder(path: Path, option: str, given: str | Path) -> None:
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise GlossError(f"{option} {given}: {existing} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".gloss-write-check-"))
    except OSError as exc:
        raise GlossError(f"{option} {given}: cannot create anything in {existing} ({exc.strerror})") from None


def check_output_dir(path: str | Path, option: str = "--run-dir") -> None:
    """One line naming ``option`` unless ``path`` is a folder, or can be created as one, that we may write in."""
    _check_folder(Path(path).absolute(), option, path)


def check_output_file(path: str | Path, option: str = "--output") -> None:
    """One line naming ``option`` unless the file ``path`` can be written (its folder exists or can be created,
    and ``path`` is not a folder)."""
    absolute = Path(path).absolute()
    if absolute.is_dir():
        raise GlossError(f"{option} {path}: is a folder (expected a file name)")
    _check_folder(absolute.parent, option, path)
