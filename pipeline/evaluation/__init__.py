"""Evaluation helpers used by ``gloss evaluate``: classification metrics and macro-silhouette
(:mod:`~pipeline.evaluation.metrics`), the linear probe (:mod:`~pipeline.evaluation.probe`), transductive
label propagation over a kNN graph (:mod:`~pipeline.evaluation.propagation`) and the plots
(:mod:`~pipeline.evaluation.plots`).

The submodules import numpy, scikit-learn, scipy, FAISS and matplotlib; nothing here is imported by
``pipeline.cli`` at start-up.
"""
