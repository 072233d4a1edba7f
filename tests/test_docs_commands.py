"""Every ``gloss ...`` command shown in a code block of README.md or docs/ parses against the real CLI.

Parsing only: click's own parser and option types (no callback, no stage runs, paths need not exist), so an
unknown option, a missing option value, an unknown subcommand, a value outside an option's choices or a word
where a number belongs fails the test with the file and line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
SEPARATORS = {"&&", "||", ";", "|"}


def code_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, line)`` of every line inside a fenced code block, continuation lines (``\\``) joined."""
    lines, fence, pending, start = [], None, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if match and (fence is None or match.group(2).startswith(fence)):
            fence = None if fence is not None else match.group(2)
            continue
        if fence is None:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    return lines


def gloss_commands(line: str) -> list[list[str]]:
    """The argument lists of each ``gloss`` command on a shell ``line``: ``gloss`` (or ``.venv/bin/gloss``)
    as a command word, i.e. first in the line or after ``&&``/``;``/``|``, after ``VAR=value`` words or a
    ``$`` prompt, or after ``torchrun ... --no-python``; comments dropped."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # not shell (a Python or TOML line with an odd quote)
        return []
    commands, current, command_word_next, previous = [], None, True, ""
    for word in words:
        if word in SEPARATORS:
            current, command_word_next = None, True
        elif current is not None:
            current.append(word)
        elif Path(word).name == "gloss" and (command_word_next or previous == "--no-python"):
            current = []
            commands.append(current)
        elif not (command_word_next and ("=" in word or word == "$")):
            command_word_next = False
        previous = word
    return commands


def _convert_values(command: click.Command, ctx: click.Context, values: dict) -> None:
    """Converts each given value with its option's type (choices, numbers); paths are not looked up."""
    for param in command.get_params(ctx):
        if param.name in values and not isinstance(param.type, click.Path | click.File):
            param.type_cast_value(ctx, values[param.name])


def parse(args: list[str]) -> None:
    """Parses ``gloss ARGS`` down to the leaf command with click's own parser and option types, without
    invoking anything (no callback, no stage); raises click's usage errors."""
    command, ctx, name, rest = main, None, "gloss", list(args)
    while True:
        ctx = click.Context(command, info_name=name, parent=ctx)
        values, rest, _ = command.make_parser(ctx).parse_args(args=rest)
        _convert_values(command, ctx, values)
        if not isinstance(command, click.Group):
            if rest:
                raise click.UsageError(f"unexpected extra arguments {rest}", ctx)
            return
        if not rest:
            return
        name, command, rest = click.Group.resolve_command(command, ctx, rest)


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOC_FILES:
        for number, line in code_lines(path):
            for args in gloss_commands(line):
                found.append((f"{path.relative_to(ROOT)}:{number}", args))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_gloss_commands():
    assert len(COMMANDS) >= 30, [where for where, _ in COMMANDS]


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command_parses(where, args):
    try:
        parse(args)
    except click.ClickException as exc:
        pytest.fail(f"{where}: `gloss {shlex.join(args)}` does not parse: {exc.format_message()}")


@pytest.mark.parametrize("args", [["train", "--no-such-option"], ["trian"], ["train", "--loss", "nope"],
                                  ["cache", "lsit"], ["predict", "--run"], ["train", "--epochs", "two"],
                                  ["prepare", "--dataset", "R8", "extra"]])
def test_a_wrong_command_is_caught(args):
    with pytest.raises(click.ClickException):
        parse(args)


def test_commands_are_found_in_shell_lines():
    assert gloss_commands("gloss prepare --dataset R8 && gloss embed --run-dir RUN  # comment") == [
        ["prepare", "--dataset", "R8"], ["embed", "--run-dir", "RUN"]]
    assert gloss_commands("torchrun --nproc-per-node 2 --no-python gloss train --run-dir RUN") == [
        ["train", "--run-dir", "RUN"]]
    assert gloss_commands("GLOSS_DATA=data gloss run --dataset R8") == [["run", "--dataset", "R8"]]
    assert gloss_commands("pip install gloss") == []
