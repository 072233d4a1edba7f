"""Graph core of gloss: kNN graphs, edge weights, differentiable label propagation, G-Loss,
TextGCN and BertGCN. Pure torch / PyG / FAISS; nothing here imports from :mod:`pipeline`."""
