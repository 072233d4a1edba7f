"""User-facing errors: one line, exit code 1."""

from __future__ import annotations

import click


class GlossError(click.ClickException):
    """A user error (bad input, bad option, missing data): printed as one line, exit code 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()) if "\n" in str(message) else str(message))
