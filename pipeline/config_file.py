"""``--config FILE``: TOML or YAML defaults for a command's options; flags on the command line win.
``--preset NAME``: a named table of defaults (``pipeline.options.PRESETS``) beneath the file's.

A file may hold top-level keys (used by every command that has such an option) and tables named after
commands (``[train]``, ``[prepare]``). Keys use the option's name with dashes or underscores
(``val-fraction`` or ``val_fraction``). Precedence, highest first: flags on the command line, the command's
own table, the tables it inherits, top-level keys. `gloss run` inherits the tables of the stages it runs
(``[prepare]``, ``[embed]``, ``[train]``, ``[evaluate]``), mapped by meaning rather than by spelling:
``[prepare] seed`` is `gloss run`'s ``--split-seed``, and a stage option with no `gloss run` counterpart
(``[embed] batch-size``, ``[evaluate] seed``, ``[evaluate] knn-k``, a stage's ``force``) is an error naming
the table and key. `gloss tune` inherits ``[train]``. A top-level key that no command knows, a table that
names no command, or a key of any table that its command does not know is an error naming the key (with the
closest option name when there is one), whichever command reads the file, so a misspelt setting never
passes silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline import options
from pipeline.errors import GlossError, did_you_mean

CONFIG_KEYS = "gloss.config_keys"  # ctx.meta: the parameters a --config file set
PRESET_KEYS = "gloss.preset_keys"  # ctx.meta: the parameters a --preset set


def option_source(ctx: click.Context, name: str) -> str | None:
    """Where parameter ``name`` of ``ctx``'s command got its value: ``"command line"``, ``"--config"``,
    ``"--preset"``, or ``None`` (the built-in default)."""
    source = ctx.get_parameter_source(name)
    if source == click.core.ParameterSource.COMMANDLINE:
        return "command line"
    if source == click.core.ParameterSource.DEFAULT_MAP:
        return "--config" if name in ctx.meta.get(CONFIG_KEYS, ()) else "--preset"
    return None


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
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise GlossError(f"{path}: not valid YAML ({where}{what})") from None
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


# The tables a command reads beneath its own: `gloss run` those of the stages it runs, `gloss tune` [train]'s.
INHERITED_TABLES = {"run": ("prepare", "embed", "train", "evaluate"), "tune": ("train",)}
# A stage option whose counterpart in the reading command has another name.
RENAMED = {("prepare", "seed"): "split_seed"}
# Stage options that the reading command has under the same name with another meaning: refused, with why.
OTHER_MEANING = {
    ("embed", "batch_size"): "it is the batch size of embedding; --batch-size there is training's",
    ("evaluate", "seed"): "it seeds evaluate's t-SNE and samples; --seed there is the training seed",
    **{(stage, "force"): "it reruns that stage alone; --force there reruns every stage"
       for stage in ("prepare", "embed", "train", "evaluate")},
}


def _config_commands(group: click.Group | None) -> dict[str, click.Command]:
    """The commands of ``group`` that read ``--config`` (the names a table may have)."""
    if group is None:
        return {}
    return {name: command for name, command in group.commands.items()
            if any(param.name == "config" for param in command.params)}


def _check_tables(data: dict[str, Any], commands: dict[str, click.Command], path: str | Path) -> None:
    """Every table names a command that reads ``--config``, and every key of a table is an option of that
    command, whichever command reads the file."""
    for table, values in data.items():
        if not isinstance(values, dict):
            continue
        if table not in commands:
            raise GlossError(f"{path}: unknown section [{table}] (sections are names of commands that read "
                             f"--config){_did_you_mean(table, set(commands))}")
        keys = option_keys(commands[table])
        for key in values:
            if key.replace("-", "_") not in keys:
                raise GlossError(f"{path}: [{table}] has no option '{key}'{_did_you_mean(key, set(keys))} "
                                 f"(see `gloss {table} --help`)")


def _inherited(data: dict[str, Any], command: click.Command, commands: dict[str, click.Command],
               path: str | Path) -> dict[str, Any]:
    """The values ``command`` takes from the tables of :data:`INHERITED_TABLES`, mapped by meaning: a stage
    option becomes the reading command's option of the same meaning (``[prepare] seed`` is `gloss run`'s
    ``--split-seed``); one without a counterpart is refused in one line, and two tables giving one option
    different values are refused unless the command's own table settles it."""
    keys = option_keys(command)
    own = {keys[k.replace("-", "_")] for k in data.get(command.name, {}) if k.replace("-", "_") in keys}
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for table in INHERITED_TABLES.get(command.name, ()):
        if table not in commands:
            continue
        table_keys = option_keys(commands[table])
        for key, value in data.get(table, {}).items():
            name = table_keys[key.replace("-", "_")]
            target = RENAMED.get((table, name), name)
            why = OTHER_MEANING.get((table, name))
            if why is not None or target not in keys.values():
                why = why or f"`gloss {command.name}` has no such option"
                raise GlossError(f"{path}: [{table}] {key} has no counterpart in `gloss {command.name}` ({why}); "
                                 f"remove it, or set what you mean in [{command.name}]")
            if target in merged and merged[target] != value and target not in own:
                raise GlossError(f"{path}: [{source[target]}] and [{table}] give {target.replace('_', '-')} "
                                 f"different values ({merged[target]!r}, {value!r}); `gloss {command.name}` "
                                 f"uses one: set it in [{command.name}]")
            merged[target], source[target] = value, table
    return merged


def defaults_for_command(data: dict[str, Any], command: click.Command, path: str | Path,
                         group: click.Group | None = None) -> dict:
    """The default map for ``command``: top-level keys it knows, beneath the tables it inherits
    (:data:`INHERITED_TABLES`), beneath its own table.

    ``group``: the command group, whose commands name the valid tables and whose options are the valid
    top-level keys (``None``: only ``command``'s own table is read and checked).
    """
    commands = _config_commands(group) or {command.name: command}
    known = _option_names(group) if group is not None else None
    keys = option_keys(command)
    _check_tables(data, commands, path)
    merged: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        normalised = key.replace("-", "_")
        if normalised in keys:
            merged[keys[normalised]] = value
        elif known is not None and normalised not in known:
            raise GlossError(f"{path}: no command has an option '{key}'{_did_you_mean(key, known)}")
    merged.update(_inherited(data, command, commands, path))
    for key, value in data.get(command.name, {}).items():
        merged[keys[key.replace("-", "_")]] = value
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
        given = defaults_for_command(data, ctx.command, value, group)
        ctx.meta[CONFIG_KEYS] = set(given)
        ctx.default_map = {**(ctx.default_map or {}), **given}
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
        ctx.meta[PRESET_KEYS] = set(values)
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
