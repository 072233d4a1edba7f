"""Every committed sweep spec that slices the training set (``limit``) also slices the test set
(``limit-test``): without it a rerun scores on the whole test set under the same row label, and no longer
reproduces the rows measured on the slice."""

from pathlib import Path

import pytest

from pipeline.config_file import read_config_file

SPECS = sorted((Path(__file__).parents[3] / "scripts").glob("sweep_*.toml"))


def _settings_per_dataset(spec: dict) -> dict[str, set[str]]:
    """The option names each dataset's runs get (top level, ``options``, ``datasets_options.<name>``, any
    method entry), with dashes as underscores."""
    shared = {k for k, v in spec.items() if not isinstance(v, (dict, list))} | set(spec.get("options", {}))
    for method in spec.get("methods", []):
        shared |= set(method)
    per_dataset = spec.get("datasets_options", {})
    return {name: {k.replace("-", "_") for k in shared | set(per_dataset.get(name, {}))}
            for name in spec.get("datasets", [])}


def test_there_are_committed_specs():
    assert len(SPECS) >= 3


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_a_spec_with_limit_also_sets_limit_test(path):
    for dataset, names in _settings_per_dataset(read_config_file(path)).items():
        assert "limit" not in names or "limit_test" in names, f"{path.name}: {dataset} sets limit but not limit-test"
