"""nnU-Net's tile grid and an exact replay of its fusion, restricted to a set of voxels.

The grid (padding, step positions, tile order) comes from nnU-Net itself
(``pad_nd_image`` and ``nnUNetPredictor._internal_get_sliding_window_slicers``).
The fusion replays ``_internal_predict_sliding_window_return_logits`` on the ROI voxels
only: half-precision accumulators, tiles added in nnU-Net's order with the same torch
ops (``acc += weighted`` on fp16, ``n += gaussian``, ``torch.div``), then the fold
ensemble as ``predict_logits_from_preprocessed_data`` does it (fp16 sum, ``/= F``).
That makes the result bitwise equal to nnU-Net's on every voxel it covers.
"""
from __future__ import annotations

import numpy as np
import torch

from .grid import TileGrid
from .model import NNUNetModel


def make_grid(model: NNUNetModel, image_shape: tuple[int, ...]) -> TileGrid:
    """nnU-Net's padding and sliding-window slicers for an image of this shape."""
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    dummy = torch.zeros((1, *image_shape), dtype=torch.uint8)
    padded, revert = pad_nd_image(dummy, model.patch_size, "constant", {"value": 0}, True, None)
    slicers = model.predictor._internal_get_sliding_window_slicers(padded.shape[1:])
    windows = tuple(tuple(s[1:]) for s in slicers)
    return TileGrid(image_shape=tuple(int(s) for s in image_shape),
                    padded_shape=tuple(int(s) for s in padded.shape[1:]),
                    pad_lo=tuple(int(s.start or 0) for s in revert[1:]),
                    patch=model.patch_size, windows=windows)


def pad_data(model: NNUNetModel, data: np.ndarray) -> torch.Tensor:
    """The preprocessed image padded exactly as nnU-Net pads it (value 0)."""
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    padded, _ = pad_nd_image(torch.from_numpy(data), model.patch_size, "constant", {"value": 0}, True, None)
    return padded


class Fusion:
    """Replay of nnU-Net's fp16 Gaussian fusion on a fixed set of voxels (the ROI)."""

    def __init__(self, grid: TileGrid, voxels_padded: np.ndarray, tiles: list[int], gaussian: torch.Tensor,
                 n_folds: int) -> None:
        self.grid, self.tiles, self.n_folds = grid, list(tiles), n_folds
        self.flat = np.flatnonzero(voxels_padded)            # ROI voxels, C order, padded grid
        coords = np.unravel_index(self.flat, grid.padded_shape)
        self.sel: list[torch.Tensor] = []                    # positions in the ROI vector, per tile
        self.local: list[torch.Tensor] = []                  # flat positions inside the patch, per tile
        for t in self.tiles:
            w = grid.windows[t]
            inside = np.ones(self.flat.size, bool)
            for ax in range(3):
                inside &= (coords[ax] >= w[ax].start) & (coords[ax] < w[ax].stop)
            idx = np.flatnonzero(inside)
            rel = [coords[ax][idx] - w[ax].start for ax in range(3)]
            self.sel.append(torch.from_numpy(idx))
            self.local.append(torch.from_numpy(np.ravel_multi_index(rel, grid.patch)))
        g = gaussian.detach().to("cpu").reshape(-1)
        n = torch.zeros(self.flat.size, dtype=torch.half)
        for sel, loc in zip(self.sel, self.local):
            part = n[sel]
            part += g[loc]
            n[sel] = part
        self.n_predictions = n

    @property
    def n_voxels(self) -> int:
        return int(self.flat.size)

    def roi_part(self, weighted: torch.Tensor, tile_pos: int) -> torch.Tensor:
        """The ROI voxels of a weighted tile output (..., C, *patch) -> (..., C, n_t), on the CPU."""
        flat = weighted.reshape(*weighted.shape[:-3], -1)
        return flat[..., self.local[tile_pos].to(flat.device)].to("cpu")

    def fuse(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per-tile ROI parts, each (k, F, C, n_t), in ``self.tiles`` order -> fused logits (k, C, n) fp16."""
        k, f, c = parts[0].shape[:3]
        acc = torch.zeros((k, f, c, self.n_voxels), dtype=torch.half)
        for sel, part in zip(self.sel, parts):
            cur = acc[..., sel]
            cur += part
            acc[..., sel] = cur
        torch.div(acc, self.n_predictions, out=acc)
        out = acc[:, 0].clone()
        for i in range(1, f):
            out += acc[:, i]
        if f > 1:
            out /= f
        return out
