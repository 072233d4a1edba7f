"""``gloss inspect`` helpers: inputs, analysis, plots, exports and the text summary."""
