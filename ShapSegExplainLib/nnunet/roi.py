"""Regions of interest: a mask or a box in the CT's geometry, or a clicked point plus a
target class (the connected component of the unperturbed prediction that holds it).

Every ROI ends up as a boolean mask on the network grid. The point ROI grows a region
tile step by tile step, computing only the tiles it needs with the same exact fusion
replay the evaluator uses, until the component no longer touches the region's edge.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from ..components import piece_at
from ..errors import ShapSegError
from .case import Case
from .evaluator import CostCounters, TileRunner, roi_labels
from .tiles import Fusion, make_grid, pad_data


MAX_ROI_SHARE = 0.9      # an ROI over more of the CT is no finding (a body mask, a CT given as a mask)


def roi_from_mask(case: Case, mask: np.ndarray | sitk.Image | str, name: str = "the ROI") -> np.ndarray:
    """A mask in the CT's geometry (array in SimpleITK order, image or file) -> network grid."""
    if isinstance(mask, str):
        name = f"the ROI mask {mask}"
        try:
            mask = sitk.ReadImage(mask)
        except RuntimeError as e:
            raise ShapSegError(f"cannot read {name}: {str(e).strip().splitlines()[-1]}", "bad_mask") from e
    image = case.as_ct_image(mask, name=name)
    arr = sitk.GetArrayFromImage(image) != 0
    share = float(arr.mean())
    if share == 0:
        raise ShapSegError(f"{name} is empty", "empty_roi")
    if share > MAX_ROI_SHARE:
        raise ShapSegError(f"{name} covers {share:.0%} of the CT; draw it around the finding (or give "
                           "--roi-point on it)", "roi_too_large")
    net = case.labels_to_network(arr.astype(np.int16)) > 0
    if not net.any():
        raise ShapSegError(f"{name} lies outside the region nnU-Net keeps (or vanishes when resampled "
                           "to the network's spacing)", "empty_roi")
    return net


def roi_from_box(case: Case, lower, upper, space: str = "ijk") -> np.ndarray:
    """An axis-aligned box: corner indices (i, j, k) inclusive, or two RAS corners in mm."""
    size = np.array(case.ct.GetSize())
    if space == "ras":
        pts = [case.ct.TransformPhysicalPointToContinuousIndex((-p[0], -p[1], p[2]))
               for p in (np.asarray(lower, float), np.asarray(upper, float))]
        lo, hi = np.minimum(*pts), np.maximum(*pts)
        lo, hi = np.ceil(lo - 0.5).astype(int), np.floor(hi + 0.5).astype(int)
    elif space == "ijk":
        lo, hi = np.minimum(lower, upper).astype(int), np.maximum(lower, upper).astype(int)
    else:
        raise ShapSegError(f"unknown box space '{space}' (use ijk or ras)", "bad_roi")
    box = f"the ROI box {tuple(map(int, lo))}-{tuple(map(int, hi))}"
    if (hi < 0).any() or (lo > size - 1).any():
        raise ShapSegError(f"{box} lies outside the CT (size {tuple(map(int, size))})", "roi_outside")
    lo, hi = np.clip(lo, 0, size - 1), np.clip(hi, 0, size - 1)
    mask = np.zeros(sitk.GetArrayViewFromImage(case.ct).shape, np.int16)
    mask[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = 1
    return roi_from_mask(case, mask, box)


def ras_to_index(case: Case, ras) -> tuple[float, float, float]:
    """A RAS point in mm (Slicer's convention) -> continuous CT index (i, j, k)."""
    x, y, z = (float(v) for v in ras)
    return case.ct.TransformPhysicalPointToContinuousIndex((-x, -y, z))


class UnperturbedPrediction:
    """Exact unperturbed labels on any region of the network grid, tile by tile."""

    def __init__(self, case: Case) -> None:
        self.case, self.model = case, case.model
        self.grid = make_grid(self.model, case.shape)
        self.padded = pad_data(self.model, case.data)
        self.outputs: dict[int, torch.Tensor] = {}
        self.counters = CostCounters()
        self.runner = TileRunner(self.model, self.model.batch_size)

    def labels(self, region: np.ndarray) -> np.ndarray:
        """nnU-Net's labels on the voxels of a network-grid region (image-shaped bool)."""
        region_p = self.grid.pad(region, False)
        tiles = self.grid.tiles_touching(region_p)
        todo = [t for t in tiles if t not in self.outputs]
        inputs = [self.padded[(slice(None), *self.grid.windows[t])] for t in todo]
        self.runner.run(inputs, self.counters, lambda i, w: self.outputs.__setitem__(todo[i], w.to("cpu")))
        fusion = Fusion(self.grid, region_p, tiles, self.model.gaussian(), len(self.model.networks))
        parts = [fusion.roi_part(self.outputs[t], i)[None] for i, t in enumerate(tiles)]
        labels = roi_labels(self.model, fusion.fuse(parts))[0].numpy()
        out = np.zeros(self.case.shape, dtype=labels.dtype)
        out[region] = labels
        return out


def roi_from_point(case: Case, index, target: int, snap_mm: float = 5.0,
                   predictor: UnperturbedPrediction | None = None) -> np.ndarray:
    """The connected component of the target class's unperturbed prediction at a CT index."""
    predictor = predictor or UnperturbedPrediction(case)
    centre = np.array(case.index_to_network(index))
    shape = np.array(case.shape)
    half = np.array(case.model.patch_size) // 2
    lo, hi = np.maximum(centre - half, 0), np.minimum(centre + half + 1, shape)
    step = np.maximum(np.array(case.model.patch_size) // 2, 1)
    while True:
        region = np.zeros(case.shape, bool)
        region[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
        target_mask = predictor.labels(region) == target
        seed = _snap(target_mask, centre, case.spacing, snap_mm)
        if seed is None:
            name = case.model.label_name(target)
            raise ShapSegError(f"the model does not predict '{name}' within {snap_mm:g} mm of the point",
                               "target_absent")
        component = piece_at(target_mask, seed)
        grow_lo, grow_hi = _touching_faces(component, lo, hi, shape)
        if not grow_lo.any() and not grow_hi.any():
            return component
        lo = np.where(grow_lo, np.maximum(lo - step, 0), lo)
        hi = np.where(grow_hi, np.minimum(hi + step, shape), hi)


def _snap(mask: np.ndarray, centre: np.ndarray, spacing, snap_mm: float):
    """The target voxel nearest to the centre within snap_mm (None if none)."""
    if mask[tuple(centre)]:
        return tuple(centre)
    r = np.ceil(snap_mm / np.array(spacing)).astype(int)
    lo, hi = np.maximum(centre - r, 0), np.minimum(centre + r + 1, mask.shape)
    sub = mask[tuple(slice(a, b) for a, b in zip(lo, hi))]
    pts = np.argwhere(sub)
    if pts.size == 0:
        return None
    d = np.linalg.norm((pts + lo - centre) * np.array(spacing), axis=1)
    if d.min() > snap_mm:
        return None
    return tuple(pts[np.argmin(d)] + lo)


def _touching_faces(component: np.ndarray, lo, hi, shape):
    """Which faces of the region box the component touches (ignoring faces at the image edge)."""
    grow_lo, grow_hi = np.zeros(3, bool), np.zeros(3, bool)
    for ax in range(3):
        idx = [slice(None)] * 3
        idx[ax] = lo[ax]
        grow_lo[ax] = lo[ax] > 0 and component[tuple(idx)].any()
        idx[ax] = hi[ax] - 1
        grow_hi[ax] = hi[ax] < shape[ax] and component[tuple(idx)].any()
    return grow_lo, grow_hi


def make_roi(case: Case, target: int, kind: str, value, snap_mm: float = 5.0,
             predictor: UnperturbedPrediction | None = None) -> np.ndarray:
    """An ROI on the network grid from one of the contract's forms: ``roi_mask`` (a path or
    array), ``roi_box`` / ``roi_box_ras`` (6 numbers), ``roi_point`` / ``roi_point_ras`` (3)."""
    if kind == "roi_mask":
        return roi_from_mask(case, value)
    v = [float(x) for x in value]
    if kind in ("roi_box", "roi_box_ras"):
        return roi_from_box(case, v[:3], v[3:], space="ijk" if kind == "roi_box" else "ras")
    if kind in ("roi_point", "roi_point_ras"):
        index = v if kind == "roi_point" else ras_to_index(case, v)
        return roi_from_point(case, index, target, snap_mm=snap_mm, predictor=predictor)
    raise ShapSegError(f"unknown ROI kind '{kind}'", "bad_roi")
