"""The plots of `gloss inspect`, read from the figures as they are saved (tests/conftest.py saved_figures):
the bars and lines each one draws."""

import numpy as np
import pytest

from pipeline.inspection.plots import plot_degree_histogram, plot_distance_histogram, plot_homophily_per_class


def test_degree_histogram_counts_every_in_degree_and_marks_k_and_the_hub_threshold(tmp_path, saved_figures):
    in_degree = np.array([0, 1, 1, 3, 3, 3, 7])
    plot_degree_histogram(in_degree, k=3, hub_threshold=6.5, path=tmp_path / "d.png")
    (ax,) = saved_figures[0].axes
    assert [patch.get_height() for patch in ax.patches] == np.bincount(in_degree).tolist()
    assert [line.get_xdata()[0] for line in ax.lines] == [3, 6.5]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["k = 3 (out-degree of every node)",
                                                                    "hub threshold (6.5)"]


def test_homophily_bars_are_the_per_class_values_beside_the_class_shares(tmp_path, saved_figures):
    plot_homophily_per_class([0.9, None, 0.4], [0.5, 0.2, 0.3], ["a", "b", "c"], 0.7, tmp_path / "h.png")
    (ax,) = saved_figures[0].axes
    assert [patch.get_height() for patch in ax.patches] == pytest.approx([0.9, 0.0, 0.4])  # no edges: no bar
    np.testing.assert_allclose(ax.collections[0].get_offsets(), [[0, 0.5], [1, 0.2], [2, 0.3]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.lines[0].get_ydata()[0] == 0.7


def test_distance_histogram_draws_the_counts_and_the_kernel_widths(tmp_path, saved_figures):
    histogram = {"counts": [2.0, 5.0, 1.0], "edges": [0.0, 0.5, 1.0, 1.5]}
    plot_distance_histogram(histogram, {"sqrt": 0.6, "dicm": None}, 0.8, tmp_path / "x.png")
    (ax,) = saved_figures[0].axes
    stairs = ax.patches[0].get_data()
    assert stairs.values.tolist() == [2.0, 5.0, 1.0] and stairs.edges.tolist() == [0.0, 0.5, 1.0, 1.5]
    assert [line.get_xdata()[0] for line in ax.lines] == [0.8, 0.6]  # the median, then sigma sqrt (no dicm)
