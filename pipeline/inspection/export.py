"""Edge lists of an inspected kNN graph for other tools: CSV, ``.npz`` and GraphML (Gephi, Cytoscape).

Edges are PyG ``source_to_target``, the direction of ``gloss graph``'s ``graph.npz``: ``source`` is a
neighbour and ``target`` the node that lists it among its k nearest (every node is the target of k edges;
how often it is a source is its k-occurrence, its hubness). ``weight`` is the edge weight label
propagation uses (:func:`graphs.edge_weights.knn_edge_weight`: ``clipped-cosine`` for ``--metric cosine``,
``median-gaussian`` for ``l2``), ``same_label`` is 1 when both ends share a label.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from pipeline.options import EXPORT_FORMATS


def parse_formats(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"csv,graphml"`` -> ``("csv", "graphml")``; ``"none"`` or ``""`` -> ``()``; ValueError otherwise."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [i.strip().lower() for i in items if i.strip() and i.strip().lower() != "none"]
    unknown = [i for i in items if i not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(
            f"unknown export format '{unknown[0]}' (expected a comma list of {', '.join(EXPORT_FORMATS)}, or none)"
        )
    return tuple(dict.fromkeys(items))


def write_edges_csv(path: str | Path, edges: np.ndarray, weight: np.ndarray, labels: np.ndarray) -> Path:
    """``source,target,weight,same_label`` rows.

    Args:
        edges: neighbour (source) -> node (target). Shapes: [2, E].
        weight: Shapes: [E].
        labels: Shapes: [N].
    """
    same = (labels[edges[0]] == labels[edges[1]]).astype(np.int64)  # [E]
    table = np.column_stack([edges[0], edges[1], weight.astype(np.float64), same])  # [E, 4]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("source,target,weight,same_label\n")
        np.savetxt(handle, table, fmt=["%d", "%d", "%.6g", "%d"], delimiter=",")
    return Path(path)


def write_edges_npz(
    path: str | Path,
    edges: np.ndarray,
    weight: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    split_names: Sequence[str],
    label_names: Sequence[str],
) -> Path:
    """``source``, ``target``, ``weight``, ``same_label`` per edge; ``label``, ``split`` per node; names."""
    with open(path, "wb") as handle:
        np.savez(
            handle,
            source=edges[0],
            target=edges[1],
            weight=weight.astype(np.float32),
            same_label=labels[edges[0]] == labels[edges[1]],
            label=labels.astype(np.int64),
            split=split.astype(np.int8),
            split_names=np.array(list(split_names)),
            label_names=np.array([str(n) for n in label_names]),
        )
    return Path(path)


GRAPHML_HEAD = (
    "<?xml version='1.0' encoding='utf-8'?>\n"
    '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
    'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n'
)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _xml_text(value: str) -> str:
    return escape(_XML_INVALID.sub("", value))


def write_graphml(
    path: str | Path,
    edges: np.ndarray,
    weight: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    split_names: Sequence[str],
    label_names: Sequence[str],
    component: np.ndarray | None = None,
    k_occurrence: np.ndarray | None = None,
    chunk: int = 20000,
) -> Path:
    """A directed GraphML file (read by Gephi, Cytoscape and ``networkx.read_graphml``): node attributes
    ``label`` (name), ``label_id``, ``split`` (and ``component``, ``k_occurrence`` = times listed as a neighbour, when given); edge attributes
    ``weight`` and ``same_label``. Streamed in chunks, so a corpus graph of 200k edges takes seconds, not
    the minute networkx's writer needs.

    Args:
        edges: neighbour (source) -> node (target). Shapes: [2, E].
        weight: Shapes: [E].
        labels, split, component, k_occurrence: per node. Shapes: [N].
    """
    node_keys = [("label", "string"), ("label_id", "int"), ("split", "string")]
    if component is not None:
        node_keys.append(("component", "int"))
    if k_occurrence is not None:
        node_keys.append(("k_occurrence", "int"))
    edge_keys = [("weight", "double"), ("same_label", "boolean")]
    names = [_xml_text(str(n)) for n in label_names]
    splits = [_xml_text(str(n)) for n in split_names]
    n = len(labels)
    same = labels[edges[0]] == labels[edges[1]]  # [E]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(GRAPHML_HEAD)
        for name, kind in node_keys:
            handle.write(f'  <key id="{name}" for="node" attr.name="{name}" attr.type="{kind}"/>\n')
        for name, kind in edge_keys:
            handle.write(f'  <key id="{name}" for="edge" attr.name="{name}" attr.type="{kind}"/>\n')
        handle.write('  <graph edgedefault="directed">\n')
        for start in range(0, n, chunk):
            lines = []
            for i in range(start, min(start + chunk, n)):
                y = int(labels[i])
                data = [
                    ("label", names[y] if y < len(names) else str(y)),
                    ("label_id", y),
                    ("split", splits[int(split[i])]),
                ]
                if component is not None:
                    data.append(("component", int(component[i])))
                if k_occurrence is not None:
                    data.append(("k_occurrence", int(k_occurrence[i])))
                fields = "".join(f'<data key="{k}">{v}</data>' for k, v in data)
                lines.append(f'    <node id="{i}">{fields}</node>\n')
            handle.write("".join(lines))
        for start in range(0, edges.shape[1], chunk):
            stop = start + chunk
            handle.write(
                "".join(
                    f'    <edge source="{s}" target="{t}"><data key="weight">{w:.6g}</data>'
                    f'<data key="same_label">{"true" if b else "false"}</data></edge>\n'
                    for s, t, w, b in zip(
                        edges[0, start:stop].tolist(),
                        edges[1, start:stop].tolist(),
                        weight[start:stop].astype(float).tolist(),
                        same[start:stop].tolist(),
                        strict=True,
                    )
                )
            )
        handle.write("  </graph>\n</graphml>\n")
    return Path(path)
