"""Label hygiene: labels that differ only in form (``'0'`` / ``'0.0'``, ``'ACQ'`` / ``'acq'``, a truncated
``'studen'`` / ``'student'``) and missing-value spellings (``nan``, ``None``) read as labels.

Labels are read as strings and compared exactly, so such pairs become separate classes; these helpers find
them, for a warning at prepare time and a ``did you mean`` on an unseen val/test label.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from pipeline.errors import did_you_mean

# What CSV and JSON writers print for a missing value; refused as a label unless --keep-nan-labels.
MISSING_SPELLINGS = frozenset({"nan", "none", "null"})
SHORTEST_STEM = 3  # a label this long or longer may be a truncated form of one 1-2 characters longer
MOST_TRAILING = 2


def is_missing(label: str) -> bool:
    """Whether ``label`` is a missing-value spelling (``nan``, ``NaN``, ``None``, ``null``)."""
    return label.strip().lower() in MISSING_SPELLINGS


def _number(label: str) -> float | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def suspect_pairs(labels: Iterable[str]) -> list[tuple[str, str, str]]:
    """Pairs of distinct labels that may mean one class, each ``(a, b, why)``, sorted: the same number
    (``'0'`` / ``'0.0'``), the same letters but for case (``'ACQ'`` / ``'acq'``), or a non-numeric label that
    is another plus one or two trailing characters (``'studen'`` / ``'student'``)."""
    names = sorted(set(labels))
    pairs: set[tuple[str, str, str]] = set()
    groups: dict[tuple[str, object], list[str]] = defaultdict(list)
    for name in names:
        number = _number(name)
        if number is not None:
            groups["same number", number].append(name)
        groups["case", name.casefold()].append(name)
    for (why, _), members in groups.items():
        pairs.update((a, b, why) for i, a in enumerate(members) for b in members[i + 1:])
    present = set(names)
    for name in names:
        if _number(name) is not None:
            continue
        for cut in range(1, MOST_TRAILING + 1):
            stem = name[:-cut]
            if len(stem) >= SHORTEST_STEM and stem in present and _number(stem) is None:
                pairs.add((stem, name, f"'{name}' is '{stem}' + '{name[-cut:]}'"))
    return sorted(pairs)


def describe_pairs(pairs: list[tuple[str, str, str]], most: int = 5) -> str:
    """``'0' / '0.0' (same number), 'ACQ' / 'acq' (case)``, at most ``most`` pairs and a count of the rest."""
    shown = ", ".join(f"'{a}' / '{b}' ({why})" for a, b, why in pairs[:most])
    return shown + (f" and {len(pairs) - most} more" if len(pairs) > most else "")


def closest_label(label: str, names: Iterable[str]) -> str:
    """``"; did you mean 'NAME'?"`` for the known label ``label`` most likely stands for (the same letters
    but for case, the same number, else the closest spelling), else ``""``."""
    names = sorted(set(names))
    number = _number(label)
    for name in names:
        if name.casefold() == label.casefold() or (number is not None and _number(name) == number):
            return f"; did you mean '{name}'?"
    return did_you_mean(label, names)
