"""Plain partitions of the whole crop for exercising and benchmarking the engine: regular
blocks in mm and the labels of an image-grid label map (-1 = fixed context, padding).
The feature abstractions users choose (organ / FCC / hybrid / SLIC) are in ``players``.
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
