"""The plots of `gloss compare`: what each figure draws (bar heights, error bars, curves), read from the figure
as it is saved, on rows aggregated from hand-built run records (no training)."""

import math

import numpy as np
import pytest

from pipeline.compare.aggregate import RunRecord, aggregate
from pipeline.compare.plots import plot_all, plot_convergence, plot_metric_bars, plot_predictors


def _record(run_dir, dataset, method, seed, accuracy, curve, head=None, probe=None, propagation=None):
    return RunRecord(run_dir, dataset, method, seed, accuracy, accuracy, None, 1.0, 2, 10.0, 100.0, curve,
                     probe_accuracy=probe, head_accuracy=head, propagation_accuracy=propagation)


@pytest.fixture
def records() -> list[RunRecord]:
    """R8: ce and gloss+ce, two replicates each; mr: ce only (gloss+ce has no cell there)."""
    return [
        _record("r8-ce-0", "R8", "ce", 0, 0.90, [0.5, 0.7, 0.8], head=0.90, probe=0.88, propagation=0.80),
        _record("r8-ce-1", "R8", "ce", 1, 0.80, [0.3, 0.5], head=0.80, probe=0.86, propagation=0.70),
        _record("r8-gl-0", "R8", "gloss+ce", 0, 0.96, [0.6, 0.9], head=0.96, probe=0.95, propagation=0.93),
        _record("r8-gl-1", "R8", "gloss+ce", 1, 0.94, [0.8, None], head=0.94, probe=0.93, propagation=None),
        _record("mr-ce-0", "mr", "ce", 0, 0.70, [0.6, 0.65], head=0.70, probe=0.72, propagation=0.60),
    ]


def _bars(ax) -> list:
    """The axes' bar series (one BarContainer per legend entry), in drawing order."""
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)]


def _error_spans(bars) -> list[tuple[float, float]]:
    """Each bar's error bar as (bottom, top) of its vertical segment; (nan, nan) for a bar without a value
    (matplotlib draws no segment there)."""
    (segments,) = [collection.get_segments() for collection in bars.errorbar.lines[2]]
    return [(float(s[0][1]), float(s[1][1])) if len(s) else (math.nan, math.nan) for s in segments]


def test_accuracy_bars_are_the_rows_means_with_std_error_bars(tmp_path, records, saved_figures):
    rows = aggregate(records)
    plot_metric_bars(rows, "accuracy", "test accuracy (%)", 100.0, tmp_path / "accuracy.png")
    assert (tmp_path / "accuracy.png").is_file()
    (figure,) = saved_figures
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["R8", "mr"]
    ce, gloss = _bars(ax)
    assert (ce.get_label(), gloss.get_label()) == ("ce", "gloss+ce")
    np.testing.assert_allclose(ce.datavalues, [85.0, 70.0])
    assert gloss.datavalues[0] == pytest.approx(95.0) and math.isnan(gloss.datavalues[1])  # no mr run
    std_ce, std_gloss = 100 * np.std([0.90, 0.80], ddof=1), 100 * np.std([0.96, 0.94], ddof=1)
    np.testing.assert_allclose(_error_spans(ce), [(85.0 - std_ce, 85.0 + std_ce), (70.0, 70.0)])
    np.testing.assert_allclose(_error_spans(gloss), [(95.0 - std_gloss, 95.0 + std_gloss), (math.nan, math.nan)])
    low, high = ax.get_ylim()
    assert low <= 85.0 - std_ce and high >= 95.0 + std_gloss  # every whole error bar is shown
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ce", "gloss+ce"]


def test_predictors_draw_head_probe_and_propagation_per_row(tmp_path, records, saved_figures):
    plot_predictors(aggregate(records), tmp_path / "predictors.png")
    (figure,) = saved_figures
    r8, mr = [ax for ax in figure.axes if ax.get_visible()]
    assert (r8.get_title(), mr.get_title()) == ("R8", "mr")
    assert [t.get_text() for t in r8.get_xticklabels()] == ["ce", "gloss+ce"]
    head, probe, propagation = _bars(r8)
    assert [b.get_label() for b in (head, probe, propagation)] == ["head", "linear probe", "label propagation"]
    np.testing.assert_allclose(head.datavalues, [85.0, 95.0])
    np.testing.assert_allclose(probe.datavalues, [87.0, 94.0])
    np.testing.assert_allclose(propagation.datavalues, [75.0, 93.0])  # one gloss+ce run has no propagation
    std = 100 * np.std([0.88, 0.86], ddof=1)
    np.testing.assert_allclose(_error_spans(probe)[0], (87.0 - std, 87.0 + std))
    np.testing.assert_allclose(_error_spans(propagation)[1], (93.0, 93.0))  # one value: std 0
    np.testing.assert_allclose([b.datavalues[0] for b in _bars(mr)], [70.0, 72.0, 60.0])


def test_convergence_draws_one_mean_curve_per_row(tmp_path, records, saved_figures):
    plot_convergence(aggregate(records), records, tmp_path / "convergence.png")
    (figure,) = saved_figures
    r8, mr = [ax for ax in figure.axes if ax.get_visible()]
    curves = {line.get_label(): line for line in r8.get_lines()}
    assert sorted(curves) == ["ce", "gloss+ce"]
    np.testing.assert_allclose(curves["ce"].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(curves["ce"].get_ydata(), [40.0, 60.0, 80.0])  # epoch 3: only the run that reached it
    np.testing.assert_allclose(curves["gloss+ce"].get_ydata(), [70.0, 90.0])  # a missing value is left out
    [(label, line)] = [(line.get_label(), line) for line in mr.get_lines()]
    assert label == "ce"
    np.testing.assert_allclose(line.get_ydata(), [60.0, 65.0])
    assert r8.get_xscale() == "linear" and r8.get_xlabel() == "epoch"


def test_plot_all_writes_every_plot(tmp_path, records, saved_figures):
    names = plot_all(aggregate(records), records, tmp_path)
    assert names == ["accuracy.png", "silhouette.png", "predictors.png", "convergence.png"]
    assert all((tmp_path / name).is_file() for name in names) and len(saved_figures) == 4
