"""``--config FILE``: TOML or YAML defaults for a command's options; flags on the command line win.
``--preset NAME``: a named table of defaults (``pipeline.options.PRESETS``) beneath the file's.

A file may hold top-level keys (used by every command that has such an option) and tables named after
commands (``[train]``, ``[prepare]``) that take precedence for that command. Keys use the option's
name with dashes or underscores (``val-fraction`` or ``val_fraction``). A top-level key that no command
knows, or a key of a table that its command does not know, is an error naming the key (with the closest
option name when there is one), so a misspelt setting never passes silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline import options
from pipeline.errors import GlossError, did_you_mean


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise GlossError(f"--config: {path} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise GlossError(f"{path}: not valid TOML ({exc})") from None
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise GlossError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    else:
        raise GlossError(f"--config: {path} must end in .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise GlossError(f"{path}: expected a table of option names and values at the top level")
    return data


def _did_you_mean(key: str, names: set[str]) -> str:
    """:func:`did_you_mean` over config keys, which may be spelled with ``-`` or ``_``."""
    return did_you_mean(key.replace("-", "_"), (n for n in names if n != key)).replace("_", "-")


def option_keys(command: click.Command) -> dict[str, str]:
    """Config keys (underscored) -> parameter names: an option's long flags and its parameter name
    (``lambda`` and ``lam`` for ``--lambda``; ``graph`` and ``graph_mode`` for ``--graph``)."""
    keys: dict[str, str] = {}
    for param in command.params:
        if not param.name:
            continue
        keys[param.name] = param.name
        for flag in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
            if flag.startswith("--") and not flag.startswith("--no-"):
                keys[flag[2:].replace("-", "_")] = param.name
    return keys


def defaults_for_command(data: dict[str, Any], command: click.Command, path: str | Path, commands: set[str],
                         known: set[str] | None = None) -> dict:
    """The default map for ``command``: top-level keys it knows, overridden by its own table.

    ``known``: the config keys of every command (top-level keys outside it are errors); ``None`` skips
    that check.
    """
    keys = option_keys(command)
    merged: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        normalised = key.replace("-", "_")
        if normalised in keys:
            merged[keys[normalised]] = value
        elif known is not None and normalised not in known:
            raise GlossError(f"{path}: no command has an option '{key}'{_did_you_mean(key, known)}")
    section = data.get(command.name, {})
    for key, value in section.items():
        normalised = key.replace("-", "_")
        if normalised not in keys:
            raise GlossError(f"{path}: [{command.name}] has no option '{key}'{_did_you_mean(key, set(keys))} "
                             f"(see `gloss {command.name} --help`)")
        merged[keys[normalised]] = value
    unknown = [k for k, v in data.items() if isinstance(v, dict) and k not in commands]
    if unknown:
        raise GlossError(f"{path}: unknown section [{unknown[0]}] (sections are command names)"
                         f"{_did_you_mean(unknown[0], commands)}")
    return merged


def _option_names(group: click.Group) -> set[str]:
    """The config keys of every command of ``group`` (and of its subgroups)."""
    names: set[str] = set()
    for command in group.commands.values():
        names |= set(option_keys(command))
        if isinstance(command, click.Group):
            names |= _option_names(command)
    return names


def config_option(func):
    """Add ``--config FILE`` to a click command; its values become the command's defaults."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None):
        if value is None:
            return None
        data = read_config_file(value)
        group = ctx.parent.command if ctx.parent and isinstance(ctx.parent.command, click.Group) else None
        commands = set(group.commands) if group else set()
        known = _option_names(group) if group else None
        ctx.default_map = {**(ctx.default_map or {}), **defaults_for_command(data, ctx.command, value, commands, known)}
        return value

    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        is_eager=True,
        expose_value=False,
        callback=callback,
        help="TOML or YAML file of option defaults; flags given here win.",
    )(func)


def preset_option(func):
    """Add ``--preset NAME`` (``options.PRESETS``): its values become option defaults *beneath* those of a
    ``--config`` file, so the precedence is flags > ``--config`` > preset > built-in defaults. The name
    reaches the command as ``preset`` (recorded in the train manifest); it may also come from the file."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None):
        if value is None:
            return None
        names = {p.name for p in ctx.command.params if p.name}
        values = {k: v for k, v in options.PRESETS[value].items() if k in names}
        # Eager options run in command-line order: a --config processed earlier already filled default_map,
        # and a later one overrides; either way the file's values win over the preset's.
        ctx.default_map = {**values, **(ctx.default_map or {})}
        return value

    return click.option(
        "--preset",
        type=click.Choice(tuple(options.PRESETS)),
        default=None,
        is_eager=True,
        callback=callback,
        help="Defaults of a named setup, beneath --config and flags: reference = the released G-Loss code "
             "(see the documentation, Training).",
    )(func)
