"""The nnU-Net side: load a results folder, preprocess a CT, the tile grid, the exact fusion replay, and the cached coalition evaluator."""
