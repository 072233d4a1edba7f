"""Sweep specs: datasets x methods x seeds, read from TOML or YAML.

```toml
datasets = ["R8", "mr"]
seeds = [0, 1, 2]
split_seed = "seed"               # optional: replicate s prepares its validation split with seed s (the
                                  # default), so seed s pairs every method on one split; an integer (0)
                                  # keeps one split for every replicate
tier = "B"                        # optional: the tier of every method (B, adapter, gpu-full); rows of
                                  # different tiers never pool
limit = 2000                      # optional, passed to `gloss run --limit`
limit_test = 500                  # optional, passed to `gloss run --limit-test` (default: whole test set)
options = { epochs = 3 }          # optional, every method's `gloss run` options

[[methods]]
name = "ce"                       # the name in tables
loss = "ce"
tier = "adapter"                  # optional: this method's tier (wins over the shared one)
options = { max-length = 128, train-layers = "0" }   # per-method options (override the shared ones)

[[methods]]
name = "bertgcn"
method = "bertgcn"
# a string option may name {dataset}, {method}, {seed} and {split_seed}: each replicate fills in its own,
# here BertGCN starts from the same seed's CE run of this sweep
options = { init-from = "results/benchmark/runs/{dataset}-ce-seed{seed}" }

[[methods]]
name = "textgcn"
method = "textgcn"

[[methods]]
name = "gloss+ce-tuned"           # the values `gloss tune` found, trained over the sweep's seeds
tuned = "runs/r8/tune/best.json"  # relative to the spec's folder, else to the working directory;
                                  # or one per dataset: tuned = { R8 = "...", mr = "..." }
options = { epochs = 5 }          # the entry's options win over the tuned values

[datasets_options.mr]             # optional per-dataset options
max-length = 64
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts import default_run_name
from pipeline.config_file import read_config_file
from pipeline.errors import GlossError

_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
TIERS = ("B", "adapter", "gpu-full")
PER_SEED_SPLIT = "seed"  # split_seed = "seed": replicate s uses split seed s
_RESERVED = ("seed", "split-seed", "split_seed", "dataset")  # set by the spec's own keys, not by options


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a dataset, a named method with its `gloss run` options, a training seed, the
    split seed (``None``: `gloss run`'s default) and the tier it is reported under."""

    dataset: str
    method: str
    seed: int
    options: tuple[tuple[str, Any], ...] = field(default=())
    split_seed: int | None = None
    tier: str | None = None

    @property
    def run_name(self) -> str:
        return default_run_name(self.dataset, self.method, self.seed)

    def cli_args(self) -> list[str]:
        args = ["--dataset", self.dataset, "--seed", str(self.seed)]
        if self.split_seed is not None:
            args += ["--split-seed", str(self.split_seed)]
        for key, value in self.options:
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                if value:
                    args.append(flag)
            else:
                args += [flag, str(value)]
        return args


def _tuned_options(path: str | Path, method: dict, dataset: str) -> dict[str, Any]:
    """The loss and tuned option values of a method entry's ``tuned = "RUN/tune/best.json"`` (or
    ``tuned = { DATASET = "..." }``) for ``dataset``."""
    from pipeline.tuning.outputs import read_best

    tuned = method["tuned"]
    if isinstance(tuned, dict):
        if dataset not in tuned:
            raise GlossError(f"{path}: method '{method['name']}': 'tuned' has no best.json for dataset {dataset}")
        tuned = tuned[dataset]
    given = Path(str(tuned))
    candidates = [given] if given.is_absolute() else [Path(path).parent / given, given]
    found = next((c for c in candidates if c.is_file()), candidates[0])
    best = read_best(found)
    if method.get("loss", best["loss"]) != best["loss"] or method.get("method", "finetune") != "finetune":
        raise GlossError(f"{path}: method '{method['name']}': {found} tuned --loss {best['loss']}, but the entry "
                         f"asks for {method.get('loss') or method.get('method')}")
    return {"loss": best["loss"], **best["params"]}


def _split_seed(path: str | Path, value: Any, seed: int) -> int:
    if value == PER_SEED_SPLIT:
        return seed
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise GlossError(f"{path}: split_seed = {value!r}: expected \"{PER_SEED_SPLIT}\" (replicate s uses split s) "
                     "or an integer")


def _tier(path: str | Path, where: str, value: Any) -> str | None:
    if value is not None and value not in TIERS:
        raise GlossError(f"{path}: {where}tier = {value!r}: expected one of {', '.join(TIERS)}")
    return value


def _per_seed(path: str | Path, method: str, options: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``{dataset}``, ``{method}``, ``{seed}`` and ``{split_seed}`` filled in string values."""
    filled = {}
    for key, value in options.items():
        if isinstance(value, str) and "{" in value:
            try:
                value = value.format(**values)
            except (KeyError, IndexError, ValueError) as exc:
                raise GlossError(f"{path}: method '{method}': option {key} = {value!r}: {exc!r} is not a "
                                 f"per-seed field (use {{{'}, {'.join(values)}}})") from None
        filled[key] = value
    return filled


def read_spec(path: str | Path) -> list[RunSpec]:
    """The runs a spec file asks for, in order (datasets, then methods, then seeds)."""
    data = read_config_file(path)
    for key in ("datasets", "methods"):
        if not data.get(key):
            raise GlossError(f"{path}: '{key}' is missing or empty")
    seeds = data.get("seeds", [0])
    split_seed = data.get("split_seed", PER_SEED_SPLIT)
    for seed in seeds:
        _split_seed(path, split_seed, int(seed))
    shared_tier = _tier(path, "", data.get("tier"))
    shared = dict(data.get("options", {}))
    for key in ("limit", "limit_test"):
        if key in data:
            shared[key] = data[key]
    per_dataset = data.get("datasets_options", {})
    runs = []
    names = set()
    for number, method in enumerate(data["methods"], start=1):
        if not isinstance(method, dict) or "name" not in method:
            raise GlossError(f"{path}: methods entry {number} needs a 'name'")
        if not _NAME.match(method["name"]) or method["name"] in names:
            raise GlossError(f"{path}: method name '{method['name']}' must be unique and use letters, digits, _.+-")
        names.add(method["name"])
        _tier(path, f"method '{method['name']}': ", method.get("tier"))
    for where, given in [("options", shared), *((f"datasets_options.{d}", o) for d, o in per_dataset.items()),
                         *((f"method '{m['name']}': options", m.get("options", {})) for m in data["methods"])]:
        reserved = sorted(set(given) & set(_RESERVED))
        if reserved:
            raise GlossError(f"{path}: {where}: {', '.join(reserved)} cannot be an option (use the spec's "
                             "datasets, seeds and split_seed)")
    for dataset in data["datasets"]:
        for method in data["methods"]:
            tuned = _tuned_options(path, method, dataset) if "tuned" in method else {}
            options = {**shared, **per_dataset.get(dataset, {}), **tuned, **method.get("options", {})}
            for key in ("method", "loss"):
                if key in method:
                    options[key] = method[key]
            tier = method.get("tier", shared_tier)
            for seed in seeds:
                split = _split_seed(path, split_seed, int(seed))
                filled = _per_seed(path, method["name"], options, {"dataset": dataset, "method": method["name"],
                                                                    "seed": int(seed), "split_seed": split})
                runs.append(RunSpec(dataset, method["name"], int(seed), tuple(sorted(filled.items())), split, tier))
    return runs
