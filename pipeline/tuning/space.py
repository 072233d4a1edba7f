"""Search spaces of ``gloss tune``: each loss's own parameters, one table per loss, read from TOML (the
shipped ``spaces.toml`` or ``--space FILE``), validated once, then sampled trial by trial.

```toml
["gloss+ce"]
sigma = { low = 0.01, high = 10.0, log = true, choices = ["sqrt", "dicm"] }  # a choice, or "range" -> a number
lambda = { low = 0.1, high = 0.9 }                                            # a range
gamma = { low = 0.5, high = 0.9, step = 0.1 }                                 # a stepped range
[ce]
head-lr = { low = 1e-4, high = 1e-2, log = true }                            # a range (log-uniform)
```

Parameter names are ``gloss train`` options (``options.SPACE_PARAMS``); a parameter applies to the losses of
``options.TUNE_PARAM_LOSSES``. ``lr`` is no parameter of a space: it is searched over the grid every loss
shares (``--lr-grid``, :mod:`pipeline.tuning.protocol`). Sections of the shipped file for a loss this build
lacks are skipped, and a loss the shipped file does not list has no parameters of its own (``triplet``,
``cosine``); in a ``--space`` file every section must name a loss of ``options.LOSSES``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline import options
from pipeline.errors import GlossError, did_you_mean

DEFAULT_SPACES = Path(__file__).with_name("spaces.toml")
RANGE = "range"  # the categorical choice of a parameter with both choices and a range that draws a number
_KEYS = ("low", "high", "log", "step", "choices")


@dataclass(frozen=True)
class Param:
    """One tuned parameter: a float range (``low``..``high``, ``log`` or ``step``), ``choices``, or both."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    @property
    def value_name(self) -> str:
        """The Optuna name of the drawn number when the parameter also has choices (``sigma_value``)."""
        return f"{self.name}_value" if self.choices else self.name

    def suggest(self, trial) -> float | str:
        """The value of this parameter for ``trial`` (an ``optuna.Trial``)."""
        if self.choices:
            choices = list(self.choices) + ([RANGE] if self.low is not None else [])
            picked = trial.suggest_categorical(self.name, choices)
            if picked != RANGE:
                return picked
        return trial.suggest_float(self.value_name, self.low, self.high, log=self.log, step=self.step)

    def fixed(self, value: Any) -> dict[str, Any]:
        """The Optuna params that make a trial take ``value`` (for enqueuing); empty when it cannot."""
        if value in self.choices:
            return {self.name: value}
        if self.low is None or isinstance(value, str) or value is None:
            return {}
        return {self.name: RANGE, self.value_name: float(value)} if self.choices else {self.name: float(value)}

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices or a number in the range."""
        if value in self.choices:
            return True
        if self.low is None or value is None or isinstance(value, str | bool):
            return False
        return self.low <= float(value) <= self.high

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "name" and v not in (None, (), False)}


Space = dict[str, Param]


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GlossError(f"{where}: '{key}' must be a number (got {value!r})")
    return float(value)


def _check_limits(where: str, name: str, low: float, high: float) -> None:
    lowest, highest, low_open, high_open = options.TUNE_PARAM_LIMITS[name]
    if low < lowest or (low_open and low == lowest):
        raise GlossError(f"{where}: low {low:g} must be {'above' if low_open else 'at least'} {lowest:g}")
    if highest is not None and (high > highest or (high_open and high == highest)):
        raise GlossError(f"{where}: high {high:g} must be {'below' if high_open else 'at most'} {highest:g}")


def _check_choices(where: str, name: str, choices: Any) -> tuple:
    if not isinstance(choices, list) or not choices:
        raise GlossError(f"{where}: 'choices' must be a non-empty list")
    for choice in choices:
        if name == "sigma" and isinstance(choice, str):
            if choice not in options.SIGMA_HEURISTICS:
                raise GlossError(f"{where}: " + options.choice_error("choice", choice, options.SIGMA_HEURISTICS))
        elif isinstance(choice, str) or isinstance(choice, bool):
            raise GlossError(f"{where}: choice {choice!r} must be a number")
        else:
            _check_limits(where, name, float(choice), float(choice))
    return tuple(choices)


def parse_param(loss: str, name: str, table: Any, source: str) -> Param:
    """One parameter of ``[loss]``, checked: known, applicable to the loss, a non-empty range in bounds."""
    where = f"{source}: [{loss}] {name}"
    if name == options.TUNE_GRID_PARAM:
        raise GlossError(f"{where}: the learning rate is searched over --lr-grid, the same values for every loss; "
                         "remove it from the space")
    if name not in options.SPACE_PARAMS:
        raise GlossError(f"{source}: [{loss}] unknown parameter '{name}' (expected one of "
                         f"{', '.join(options.SPACE_PARAMS)}){did_you_mean(name, options.SPACE_PARAMS)}")
    losses = options.TUNE_PARAM_LOSSES[name]
    if losses is not None and loss not in losses:
        raise GlossError(f"{where}: applies to {', '.join(x for x in losses if x in options.LOSSES)} only")
    if not isinstance(table, dict):
        raise GlossError(f"{where}: expected a table such as {{ low = 1e-5, high = 1e-4, log = true }}")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise GlossError(f"{where}: unknown key '{unknown[0]}' (expected {', '.join(_KEYS)})"
                         f"{did_you_mean(unknown[0], _KEYS)}")
    choices = _check_choices(where, name, table["choices"]) if "choices" in table else ()
    if ("low" in table) != ("high" in table):
        raise GlossError(f"{where}: a range needs both 'low' and 'high'")
    if "low" not in table:
        if not choices:
            raise GlossError(f"{where}: give a range (low, high) or choices")
        if "log" in table or "step" in table:
            raise GlossError(f"{where}: 'log' and 'step' need a range (low, high)")
        return Param(name, choices=choices)
    low, high = _number(where, "low", table["low"]), _number(where, "high", table["high"])
    if not low < high:
        raise GlossError(f"{where}: empty range [{low:g}, {high:g}] (low must be below high)")
    _check_limits(where, name, low, high)
    log = table.get("log", False)
    if not isinstance(log, bool):
        raise GlossError(f"{where}: 'log' must be true or false")
    step = _number(where, "step", table["step"]) if "step" in table else None
    if step is not None and (log or step <= 0):
        raise GlossError(f"{where}: 'step' must be positive and cannot go with log = true")
    return Param(name, low, high, log, step, choices)


def parse_spaces(data: dict, source: str, *, strict: bool = True) -> dict[str, Space]:
    """Every loss's space in ``data`` (a parsed TOML document). ``strict``: a section naming no loss of
    ``options.LOSSES`` is an error (else it is skipped: the shipped file may list a loss not built in)."""
    spaces: dict[str, Space] = {}
    for loss, table in data.items():
        if loss not in options.LOSSES:
            if strict:
                raise GlossError(f"{source}: unknown loss [{loss}] (expected one of {', '.join(options.LOSSES)})"
                                 f"{did_you_mean(loss, options.LOSSES)}")
            continue
        if not isinstance(table, dict) or not table:
            raise GlossError(f"{source}: [{loss}] has no parameters")
        spaces[loss] = {name: parse_param(loss, name, value, source) for name, value in table.items()}
    return spaces


def read_spaces(path: str | Path | None = None) -> dict[str, Space]:
    """The spaces of ``path`` (``--space FILE``), else the shipped defaults."""
    import tomllib

    source = Path(path) if path is not None else DEFAULT_SPACES
    if not source.is_file():
        raise GlossError(f"--space: {source} not found")
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise GlossError(f"{source}: not valid TOML ({exc})") from None
    return parse_spaces(data, str(source), strict=path is not None)


def load_space(loss: str, path: str | Path | None = None) -> Space:
    """The own parameters of ``loss``: a ``--space FILE``'s table (an error when it has none) or the shipped
    defaults' (empty for a loss they do not list)."""
    spaces = read_spaces(path)
    if path is None:
        return spaces.get(loss, {})
    if loss not in spaces:
        raise GlossError(f"{path}: no [{loss}] table (has: {', '.join(spaces) or 'none'})")
    return spaces[loss]


def describe_space(space: Space) -> dict[str, dict[str, Any]]:
    """A JSON-able form of ``space`` (part of the study's config)."""
    return {name: param.describe() for name, param in space.items()}


def corpus_heuristics(space: Space) -> list[str]:
    """The corpus sigma heuristics a space may pick (they need ``RUN/embed``)."""
    sigma = space.get("sigma")
    return [c for c in (sigma.choices if sigma else ()) if c in options.CORPUS_SIGMA_HEURISTICS]
