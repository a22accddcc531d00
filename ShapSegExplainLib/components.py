"""Connected pieces of a mask, one definition for every region that is "one piece of a
finding": the point region (the predicted component under the click) and the segment region
(one island of a painted or AI segment). Face connectivity (6 neighbours), as scipy's default."""
from __future__ import annotations

import numpy as np


def pieces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, voxels): the pieces numbered 1, 2, ... from the largest (ties: the first in
    C order), 0 outside; ``voxels[k - 1]`` is piece k's size."""
    from scipy import ndimage
    raw, n = ndimage.label(np.asarray(mask, bool))
    if n == 0:
        return raw, np.zeros(0, np.int64)
    sizes = np.bincount(raw.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable")            # raw labels are in C order of first voxel
    rank = np.zeros(n + 1, raw.dtype)
    rank[order + 1] = np.arange(1, n + 1)
    return rank[raw], sizes[order]


def piece_at(mask: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
    """The piece of ``mask`` that contains the voxel ``seed``."""
    labels, _ = pieces(mask)
    return labels == labels[tuple(seed)]
