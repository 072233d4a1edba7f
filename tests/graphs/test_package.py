import ast
from pathlib import Path

import graphs

GRAPHS_DIR = Path(graphs.__file__).parent


def test_graphs_never_imports_pipeline():
    for path in GRAPHS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            assert not any(n == "pipeline" or n.startswith("pipeline.") for n in names), path


def test_public_api_is_exported():
    for name in graphs.__all__:
        assert hasattr(graphs, name), name
    expected = {"knn_search", "knn_graph", "GLoss", "MemoryBank", "DifferentiableLabelPropagation"}
    assert expected <= set(graphs.__all__)
