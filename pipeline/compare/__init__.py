"""Comparison of methods x datasets x seeds: sweep specs, aggregation, published numbers, plots."""
