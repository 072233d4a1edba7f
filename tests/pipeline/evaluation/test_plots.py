"""The plots of `gloss evaluate`: what each figure draws (read from the figure as it is saved), not only that a
PNG exists."""

import numpy as np
from matplotlib import image

from pipeline.evaluation.plots import plot_confusion_matrix, plot_tsne, tsne_coordinates


def _not_blank(path) -> None:
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and float(pixels[..., :3].std()) > 0.05


def test_confusion_matrix_draws_rows_normalised_with_names_and_shares(tmp_path, saved_figures):
    counts = np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]])
    path = plot_confusion_matrix(counts, ["a", "b", "c"], tmp_path / "cm.png")
    _not_blank(path)
    (figure,) = saved_figures
    ax = figure.axes[0]
    expected = np.array([[0.75, 0.25, 0.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.5]])  # a gold class without rows: 0
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted label", "true label")
    shares = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert shares == {(0, 0): "0.75", (0, 1): "0.25", (2, 1): "0.50", (2, 2): "0.50"}


def test_tsne_draws_a_seeded_sample_coloured_by_class(tmp_path, saved_figures):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = np.eye(3, 5)[y] * 5 + rng.normal(size=(60, 5))
    drawn = plot_tsne(x, y, ["a", "b", "c"], tmp_path / "tsne.png", max_points=25, seed=0)
    assert drawn == 25
    _not_blank(tmp_path / "tsne.png")
    (figure,) = saved_figures
    ax = figure.axes[0]
    rows = np.sort(np.random.default_rng(0).choice(60, size=25, replace=False))
    counts = np.bincount(y[rows], minlength=3)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{n} ({c})" for n, c in zip("abc", counts, strict=True)]
    points = [collection.get_offsets() for collection in ax.collections]
    assert [len(p) for p in points] == counts.tolist()
    coords = tsne_coordinates(x[rows], seed=0)
    for class_id, offsets in enumerate(points):
        np.testing.assert_allclose(np.asarray(offsets), coords[y[rows] == class_id], rtol=1e-5, atol=1e-5)
    colours = {tuple(np.round(c.get_facecolor()[0], 3)) for c in ax.collections}
    assert len(colours) == 3 and ax.get_title() == "t-SNE of 25 test embeddings"


def test_tsne_of_tiny_inputs(tmp_path):
    assert plot_tsne(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]), ["a", "b"], tmp_path / "t.png") == 2
    assert plot_tsne(np.array([[1.0]]), np.array([1]), ["a", "b"], tmp_path / "u.png") == 1
