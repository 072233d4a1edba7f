"""The short text summary of ``gloss inspect`` (printed and saved as ``summary.txt``)."""

from __future__ import annotations

from typing import Any


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A dozen lines covering every section of an ``inspect.json`` report."""
    s = report
    splits = " / ".join(f"{name} {count:,}" for name, count in s["splits"].items())
    lines = [
        f"inspect: {s['source']}",
        f"nodes {s['nodes']:,} ({splits}), dim {s['dim']}, {s['classes']} classes; exact kNN k={s['k']} "
        f"{s['metric']}, backend {s['search']['backend']} on {s['device']} ({s['search']['seconds']:.2f}s)",
    ]
    h = s["homophily"]
    worst = [(v, i) for i, v in enumerate(h["per_class"]) if v is not None]
    names = s["label_names"]
    low = ""
    if worst:
        value, cls = min(worst)
        low = f"; lowest class {names[cls] if cls < len(names) else cls} {value:.3f}"
    lines.append(
        f"edge homophily {_f(h['edge_homophily'])} (random graph {_f(h['random_baseline'])}, "
        f"class-insensitive {_f(h['class_insensitive'])}){low}"
    )
    d = s["degree"]
    q = d["in"]["quantiles"]
    lines.append(
        f"degree: out {d['out']['min']:g}-{d['out']['max']:g}; in min {d['in']['min']:g} / median "
        f"{q.get('p50', 0):g} / mean {d['in']['mean']:.1f} / p99 {q.get('p99', 0):g} / "
        f"max {d['in']['max']:g}; "
        f"{d['hubs']:,} hubs (in-degree > {d['hub_threshold']:g}), {d['orphans']:,} orphans, "
        f"skewness {d['in_skewness']:.2f}"
    )
    c = s["components"]
    lines.append(
        f"components (weak): {c['components']:,}, largest {c['largest']:,}, {c['singletons']:,} singletons; "
        f"label purity {_f(c['purity_weighted'])} size-weighted, {_f(c['purity_mean'])} mean"
    )
    v = s["knn_vote"]
    per = ", ".join(f"{k} {val:.3f}" for k, val in v.get("per_split", {}).items())
    lines.append(f"leave-one-out kNN vote accuracy {_f(v['accuracy'])}" + (f" ({per})" if per else ""))
    p = s["label_propagation"]
    per = ", ".join(f"{k} {val:.3f}" for k, val in p.get("per_split", {}).items())
    lines.append(
        f"label propagation ({p['policy']}): hidden accuracy {_f(p['accuracy'])}"
        + (f" ({per})" if per else "")
        + f"; {p['unreached']} unreached, {p['iterations']} iterations"
        + ("" if p["converged"] else " (not converged)")
    )
    dist, sigma = s["distances"], s["sigma"]
    dq = dist["quantiles"]
    lines.append(
        f"distances ({dist['pairs']:,} pairs): median {dq['p50']:.3f} "
        f"(p05 {dq['p05']:.3f}, p95 {dq['p95']:.3f}); "
        f"corpus sigma (training pool) sqrt {_f(sigma['sqrt'], 4)}, dicm {_f(sigma['dicm'], 4)}"
        + (f" ({sigma['dicm_zero_distance_pairs']} zero-distance pairs of different labels skipped)"
           if sigma.get("dicm_zero_distance_pairs") else "")
        + (f"; DEGENERATE: {', '.join(sigma['degenerate'])} below {sigma['min_useful']} (an effectively 1-NN "
           f"graph)" if sigma.get("degenerate") else "")
    )
    b = s["batches"]
    lines.append(
        f"G-Loss batches ({b['num_batches']} x {b['batch_size']}, gamma {b['gamma']}): hidden accuracy "
        f"{_f(b['accuracy'])} (scorable {_f(b['accuracy_scorable'])}), same-label transition mass "
        f"{_f(b['same_label_mass'])}, mean {b['sigma_heuristic']} sigma {_f(b['sigma'], 4)}"
    )
    sil = s.get("silhouette")
    if sil:
        lines.append(
            f"silhouette (cosine, {sil['samples']:,} points) {sil['silhouette']:.3f}, "
            f"macro {sil['macro_silhouette']:.3f}"
        )
    for e in s.get("epochs") or []:
        lines.append(
            f"epoch {e['epoch']}: homophily {_f(e['edge_homophily'])}, "
            f"kNN vote {_f(e['knn_vote_accuracy'])}, "
            f"LP {_f(e['lp_accuracy'])}, silhouette {_f(e['silhouette'])}"
        )
    return lines
