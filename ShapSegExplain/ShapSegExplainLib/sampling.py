"""Random coalitions for tests and benchmarks."""
from __future__ import annotations

import numpy as np


def uniform_size_coalitions(rng: np.random.Generator, k: int, m: int) -> np.ndarray:
    """k coalitions of m players whose sizes are uniform on 0..m (then a uniform subset)."""
    out = np.zeros((k, m), bool)
    for i in range(k):
        out[i, rng.permutation(m)[:rng.integers(0, m + 1)]] = True
    return out
