"""Player maps over the crop: an integer label per crop voxel, -1 for fixed context.

This module holds the partitions the engine needs to be exercised and benchmarked:
regular blocks of a given size in mm, and the labels of an anatomy map. The
paper's organ / FCC / hybrid abstractions build on these.
"""
from __future__ import annotations

import numpy as np

from .evaluator import RoiPlan


def compact_ids(pmap: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber non-negative ids to 0..M-1 in order of first appearance; -1 stays -1."""
    out = np.full(pmap.shape, -1, dtype=np.int32)
    keep = pmap >= 0
    _, inverse = np.unique(pmap[keep], return_inverse=True)
    out[keep] = inverse
    return out, int(inverse.max() + 1) if inverse.size else 0


def block_players(plan: RoiPlan, spacing, block_mm: float) -> tuple[np.ndarray, int]:
    """Cubes of about ``block_mm`` on the crop (image voxels only; padding is context)."""
    shape = plan.crop_shape
    size = np.maximum(np.round(block_mm / np.asarray(spacing, float)).astype(int), 1)
    blocks = np.indices(shape) // size[:, None, None, None]
    ids = np.ravel_multi_index(tuple(blocks), tuple(int(b.max()) + 1 for b in blocks))
    ids = np.where(plan.image_in_crop, ids, -1)
    return compact_ids(ids)


def label_players(plan: RoiPlan, labels_image: np.ndarray) -> tuple[np.ndarray, int]:
    """One player per label value of an image-grid label map, over the crop (padding is context)."""
    padded = plan.grid.pad(np.asarray(labels_image).astype(np.int64), -1)
    return compact_ids(padded[plan.crop])
