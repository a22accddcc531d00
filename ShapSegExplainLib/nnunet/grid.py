"""The tile grid and the ROI plan as plain arrays: no torch, so player code can use them.

``TileGrid`` holds nnU-Net's windows (made by ``tiles.make_grid`` from nnU-Net's own
padding and slicers); ``RoiPlan`` the ROI, the tiles that touch it and their union (the crop).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Window = tuple[slice, slice, slice]


@dataclass(frozen=True)
class TileGrid:
    """Tile windows of the whole padded image, in nnU-Net's order."""
    image_shape: tuple[int, int, int]
    padded_shape: tuple[int, int, int]
    pad_lo: tuple[int, int, int]
    patch: tuple[int, int, int]
    windows: tuple[Window, ...]

    def __len__(self) -> int:
        return len(self.windows)

    def tiles_touching(self, mask_padded: np.ndarray) -> list[int]:
        """Indices (nnU-Net order) of the tiles whose window holds a voxel of the mask."""
        return [i for i, w in enumerate(self.windows) if mask_padded[w].any()]

    def union_box(self, tiles: list[int]) -> Window:
        """The bounding box of the windows of some tiles (the crop)."""
        lo = np.min([[s.start for s in self.windows[t]] for t in tiles], axis=0)
        hi = np.max([[s.stop for s in self.windows[t]] for t in tiles], axis=0)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))

    def pad(self, array: np.ndarray, value=0) -> np.ndarray:
        """An image-shaped array placed in the padded grid (``value`` in the padding)."""
        out = np.full(self.padded_shape, value, dtype=array.dtype)
        out[tuple(slice(p, p + s) for p, s in zip(self.pad_lo, self.image_shape))] = array
        return out



@dataclass(frozen=True)
class RoiPlan:
    """The ROI on the padded network grid, the tiles that touch it and their union (the crop)."""
    grid: TileGrid
    roi_padded: np.ndarray
    tiles: tuple[int, ...]
    crop: Window

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        return tuple(s.stop - s.start for s in self.crop)

    @property
    def roi_in_crop(self) -> np.ndarray:
        return self.roi_padded[self.crop]

    @property
    def image_in_crop(self) -> np.ndarray:
        """True where a crop voxel is image, False where it is nnU-Net's padding."""
        inside = self.grid.pad(np.ones(self.grid.image_shape, bool), False)
        return inside[self.crop]

    def crop_to_image(self, array_crop: np.ndarray, fill=0) -> np.ndarray:
        """A crop-shaped array placed on the (unpadded) network image grid."""
        full = np.full(self.grid.padded_shape, fill, dtype=array_crop.dtype)
        full[self.crop] = array_crop
        return full[tuple(slice(p, p + s) for p, s in zip(self.grid.pad_lo, self.grid.image_shape))]
