"""The layout rules of the tree (issue 11): short functions, imports that only run downwards, one lint."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80


def _modules(*packages: str):
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_is_longer_than_80_lines():
    """From the ``def`` line to the last line; decorators (cli.py's option blocks) are not counted."""
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in _modules("pipeline", "graphs")
        for node in _functions(ast.parse(path.read_text()))
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def _imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_only_the_cli_and_the_stages_import_stages():
    allowed = {ROOT / "pipeline" / "cli.py"}
    stages_dir = ROOT / "pipeline" / "stages"
    upward = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules("pipeline")
        if path not in allowed and stages_dir not in path.parents
        for name in _imported_modules(ast.parse(path.read_text()))
        if name == "pipeline.stages" or name.startswith("pipeline.stages.")
    ]
    assert not upward, "\n".join(upward)


def test_the_layout_checks_can_fail(tmp_path):
    """The two checks above look at real syntax: a long function and an upward import are found."""
    long_source = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    node = next(_functions(ast.parse(long_source)))
    assert node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    assert "pipeline.stages.prepare" in _imported_modules(ast.parse("from pipeline.stages import prepare"))

