import networkx as nx
import numpy as np
import pytest
import torch

from graphs.inspection import (
    BATCH_SIGMA,
    component_ids,
    component_purity,
    degree_stats,
    distance_distribution,
    edge_homophily,
    gloss_batch_graphs,
    knn_vote,
    node_degrees,
    snowball_sample,
)
from graphs.knn import knn_edge_index, knn_search
from graphs.losses.g_loss import GLoss

# Hand-made graph; edges source_to_target (row 0 = neighbour, row 1 = the node that lists it).
# Labels: nodes 0-2 class 0, 3-4 class 1, 5 class 2. Node lists neighbour:
#   0 lists 1, 1 lists 0, 1 lists 2 (same), 2 lists 3 (class 0 -> 1), 3 lists 4, 4 lists 3 (same), 5 lists 4
LABELS_6 = np.array([0, 0, 0, 1, 1, 2])
EDGES_6 = np.array([[1, 0, 2, 3, 4, 3, 4], [0, 1, 1, 2, 3, 4, 5]])

# Three components: {0, 1, 2} all class 0; {3, 4, 5} classes 1, 1, 2; {6} alone (class 0).
LABELS_7 = np.array([0, 0, 0, 1, 1, 2, 0])
EDGES_7 = np.array([[1, 0, 2, 4, 3, 4], [0, 1, 1, 3, 4, 5]])


def test_edge_homophily_of_a_hand_made_graph():
    h = edge_homophily(EDGES_6, LABELS_6)
    assert h["edges"] == 7
    assert h["edge_homophily"] == pytest.approx(5 / 7)
    # class-0 nodes list 4 neighbours (3 of class 0), class 1 lists 2 (both same), class 2 lists 1 (other)
    assert h["per_class"] == pytest.approx([0.75, 1.0, 0.0])
    assert h["edges_per_class"] == [4, 2, 1]
    assert h["random_baseline"] == pytest.approx((3 / 6) ** 2 + (2 / 6) ** 2 + (1 / 6) ** 2)
    assert h["class_insensitive"] == pytest.approx(((0.75 - 0.5) + (1 - 1 / 3) + 0) / 2)


def test_edge_homophily_marks_classes_without_edges_and_accepts_tensors():
    h = edge_homophily(torch.tensor([[0], [1]]), torch.tensor([0, 0, 2]), num_classes=4)
    assert h["edge_homophily"] == 1.0
    assert h["per_class"] == [1.0, None, None, None]


def test_components_and_their_purity():
    count, ids = component_ids(EDGES_7, 7)
    assert count == 3
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] == ids[5] and len({ids[0], ids[3], ids[6]}) == 3
    p = component_purity(ids, LABELS_7)
    assert p["components"] == 3 and p["largest"] == 3 and p["singletons"] == 1 and p["pure_components"] == 2
    assert p["purity_weighted"] == pytest.approx((3 + 2 + 1) / 7)
    assert p["purity_mean"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert p["top"][0]["size"] == 3 and p["top"][-1] == {"size": 1, "purity": 1.0, "majority": 0}
    assert {(t["size"], round(t["purity"], 4), t["majority"]) for t in p["top"][:2]} == {
        (3, 1.0, 0),
        (3, 0.6667, 1),
    }


def test_components_are_weak_not_strong():
    # 0 -> 1 -> 2 is one weak component although no node reaches 0
    count, _ = component_ids(np.array([[0, 1], [1, 2]]), 3)
    assert count == 1
    count, _ = component_ids(np.array([[1, 2], [0, 1]]), 3)  # the same graph, source_to_target
    assert count == 1


def test_degrees_hubs_and_orphans():
    out_deg, in_deg = node_degrees(EDGES_7, 7)
    assert out_deg.tolist() == [1, 2, 0, 1, 1, 1, 0]
    assert in_deg.tolist() == [1, 1, 1, 1, 2, 0, 0]
    d = degree_stats(out_deg, in_deg)
    assert d["in"]["max"] == 2 and d["in"]["min"] == 0 and d["in"]["mean"] == pytest.approx(6 / 7)
    assert d["hub_threshold"] == pytest.approx(12 / 7)
    assert d["hubs"] == 1 and d["orphans"] == 2 and d["top_hubs"][0] == [4, 2]
    assert set(d["in"]["quantiles"]) == {"p01", "p05", "p25", "p50", "p75", "p95", "p99"}


def test_knn_edge_index_drops_missing_neighbours():
    edges = knn_edge_index(torch.tensor([[1, 2], [0, -1], [1, 0]]))
    # source_to_target: row 0 the neighbour, row 1 the node (the old node -> neighbour rows, swapped)
    assert edges.flip(0).tolist() == [[0, 0, 1, 2, 2], [1, 2, 0, 1, 0]]


def test_knn_vote_leave_one_out_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    neighbours = np.array(
        [
            [1, 2, 3],  # 0, 1, 1 -> 1 (wrong)
            [0, 2, 4],  # 0, 1, 1 -> 1 (wrong)
            [3, 4, 0],  # 1, 1, 0 -> 1 (right)
            [2, 0, 1],  # 1, 0, 0 -> 0 (wrong)
            [2, 3, 0],
        ]
    )  # 1, 1, 0 -> 1 (right)
    v = knn_vote(neighbours, labels)
    assert v["predictions"].tolist() == [1, 1, 1, 0, 1]
    assert v["accuracy"] == pytest.approx(2 / 5)
    assert v["per_class"] == pytest.approx([0.0, 2 / 3])
    assert v["macro_recall"] == pytest.approx(1 / 3)


def test_knn_vote_breaks_ties_by_the_nearest_neighbour():
    labels = np.array([0, 1, 2, 0])
    neighbours = np.array([[2, 1], [3, 2], [1, 0], [1, 2]])  # every vote is a 1-1 tie
    v = knn_vote(neighbours, labels, num_classes=4)
    assert v["predictions"].tolist() == [2, 0, 1, 1]
    assert v["per_class"][3] is None


def test_knn_vote_rejects_bad_neighbour_ids():
    with pytest.raises(ValueError, match="neighbour id"):
        knn_vote(np.array([[1], [5]]), np.array([0, 1]))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_faiss_and_torch_give_the_same_neighbours(metric):
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    s_faiss, n_faiss = knn_search(x, x, 7, metric=metric, backend="faiss", exclude_self=True)
    s_torch, n_torch = knn_search(x, x, 7, metric=metric, backend="torch", exclude_self=True)
    assert torch.equal(n_faiss, n_torch)
    torch.testing.assert_close(s_faiss, s_torch, atol=1e-4, rtol=1e-4)
    assert not (n_faiss == torch.arange(300).view(-1, 1)).any()  # the node itself is excluded
    labels = np.arange(300) % 3
    assert knn_vote(n_faiss, labels)["accuracy"] == knn_vote(n_torch, labels)["accuracy"]


def test_distance_distribution_of_known_points():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    d = distance_distribution(x, bins=5)
    assert d["pairs"] == 3 and d["sample"] == 3
    assert d["quantiles"]["p00"] == pytest.approx(3.0) and d["quantiles"]["p50"] == pytest.approx(4.0)
    assert d["quantiles"]["p100"] == pytest.approx(5.0) and sum(d["histogram"]["counts"]) == 3
    assert distance_distribution(torch.randn(100, 4), sample=10)["pairs"] == 45


def _clusters(n_per_class=20, classes=3, dim=8, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(classes, dim)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + spread * torch.randn(len(y), dim, generator=g), y


def test_gloss_batch_graphs_on_separated_clusters():
    x, y = _clusters()
    out = gloss_batch_graphs(x, y, num_batches=3, batch_size=24, gamma=0.6, seed=0)
    assert len(out["batches"]) == 3 and out["batch_size"] == 24
    assert out["accuracy"] == 1.0 and out["same_label_mass"] > 0.7  # the sqrt sigma is wide: mass leaks
    assert out["sigma_heuristic"] == BATCH_SIGMA == "batch-sqrt"
    ex = out["example"]
    assert ex["weight"].shape == (24, 24) and torch.all(ex["weight"].diagonal() == 0)
    assert torch.equal(ex["labels"], ex["labels"].sort().values)
    # the split is G-Loss's own: same generator seed, same first mask
    rows = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:24]
    visible = GLoss(gamma=0.6, seed=0).split(y[rows])
    assert out["batches"][0]["hidden"] == int((~visible).sum())


def test_gloss_batch_graphs_accuracy_falls_with_noise():
    x, y = _clusters(spread=5.0, seed=1)
    noisy = gloss_batch_graphs(x, y, num_batches=4, batch_size=30)
    assert noisy["accuracy"] < 0.9 and noisy["same_label_mass"] < 0.5


def test_snowball_sample_is_seeded_and_connected_where_possible():
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    _, nbr = knn_search(x, x, 5, backend="torch", exclude_self=True)
    edges = knn_edge_index(nbr).numpy()
    a = snowball_sample(edges, 500, size=60, num_seeds=1, seed=1)
    assert len(a) == len(set(a.tolist())) == 60
    assert np.array_equal(a, snowball_sample(edges, 500, size=60, num_seeds=1, seed=1))
    sub = nx.Graph()
    sub.add_nodes_from(a.tolist())
    inside = np.isin(edges[0], a) & np.isin(edges[1], a)
    sub.add_edges_from(edges[:, inside].T.tolist())
    assert nx.is_connected(sub)  # one seed, breadth first: a connected ball
    # more nodes than the graph holds, and isolated nodes: every node is taken once
    assert snowball_sample(np.zeros((2, 0), dtype=np.int64), 7, size=50).tolist() == list(range(7))


def test_sigma_report_flags_a_degenerate_sigma():
    from graphs.inspection import sigma_report
    from graphs.sigma import sigma_dicm, sigma_sqrt_median

    g = torch.Generator().manual_seed(3)
    z = torch.nn.functional.normalize(torch.randn(40, 8, generator=g, dtype=torch.float64), dim=1)
    y = torch.arange(40) % 2
    report = sigma_report(z, y)
    assert report["sqrt"] == sigma_sqrt_median(z) and report["dicm"] == sigma_dicm(z, y)
    assert report["degenerate"] == [] and report["dicm_zero_distance_pairs"] == 0 and report["min_useful"] == 0.01
    z[1] = z[0]  # a duplicate text with another label: skipped and counted
    z[3] = torch.nn.functional.normalize(z[2] + 1e-4, dim=0)  # a near-duplicate with another label: tiny dicm
    report = sigma_report(z, y)
    assert report["dicm_zero_distance_pairs"] == 1 and report["dicm"] < 0.01 and report["degenerate"] == ["dicm"]
    assert sigma_report(z, torch.zeros(40, dtype=torch.long))["dicm"] is None
