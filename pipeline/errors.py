"""User-facing errors: one line, exit code 1."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import click


class GlossError(click.ClickException):
    """A user error (bad input, bad option, missing data): printed as one line, exit code 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()) if "\n" in str(message) else str(message))


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """``"; did you mean 'NAME'?"`` for the closest of ``names`` to a mistyped ``word``, else ``""``."""
    close = difflib.get_close_matches(word, sorted(names), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
