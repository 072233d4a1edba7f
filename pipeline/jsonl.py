"""JSON Lines, read in one place: the dataset reader, ``gloss predict``'s input and ``history.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import GlossError
from pipeline.textfile import split_lines


def json_objects(text: str, path: str | Path, expected: str = "a JSON object per line",
                 keep_blank: bool = False) -> Iterator[tuple[int, dict | None]]:
    """``(line number, object)`` for every line of ``text`` (the contents of ``path``), numbered from 1.

    Lines end at ``\\n`` or ``\\r\\n`` only (:func:`pipeline.textfile.split_lines`). Blank lines are skipped,
    or yielded as ``None`` with ``keep_blank``. A line that is not JSON, or not a JSON object, stops with a
    one-line error naming ``path`` and the line (``expected`` completes it).
    """
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            if keep_blank:
                yield number, None
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GlossError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise GlossError(f"{path}: line {number}: expected {expected}")
        yield number, value
