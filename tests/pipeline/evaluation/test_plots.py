import numpy as np
from matplotlib import image

from pipeline.evaluation.plots import plot_confusion_matrix, plot_tsne


def test_confusion_matrix_png(tmp_path):
    path = plot_confusion_matrix(np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]]), ["a", "b", "c"], tmp_path / "cm.png")
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100


def test_tsne_png_samples_at_most_max_points(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = np.eye(3, 5)[y] * 5 + rng.normal(size=(60, 5))
    drawn = plot_tsne(x, y, ["a", "b", "c"], tmp_path / "tsne.png", max_points=25, seed=0)
    assert drawn == 25 and image.imread(tmp_path / "tsne.png").shape[0] > 100


def test_tsne_of_tiny_inputs(tmp_path):
    assert plot_tsne(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]), ["a", "b"], tmp_path / "t.png") == 2
    assert plot_tsne(np.array([[1.0]]), np.array([1]), ["a", "b"], tmp_path / "u.png") == 1
