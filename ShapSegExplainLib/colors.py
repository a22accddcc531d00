"""Colours and opacities for attributions: one diverging map, centred on 0 and symmetric
in |φ|, shared by ``players.seg.nrrd``, ``report.png`` and the Slicer module."""
from __future__ import annotations

import numpy as np

CMAP = "RdBu_r"   # red = pushes the value up, blue = pushes it down (colour-blind safe)


def phi_scale(phi: np.ndarray) -> float:
    """The colour scale's half-width: max |φ| (1 when every φ is 0, so colours stay defined)."""
    m = float(np.max(np.abs(phi))) if np.size(phi) else 0.0
    return m if m > 0 else 1.0


def phi_colors(phi: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """RGB in [0, 1], (n, 3): φ = 0 is the map's neutral centre, ±vmax its ends."""
    from matplotlib import colormaps
    vmax = phi_scale(phi) if vmax is None else float(vmax)
    t = 0.5 + 0.5 * np.clip(np.asarray(phi, float) / vmax, -1.0, 1.0)
    return np.asarray(colormaps[CMAP](t))[:, :3]


def phi_opacity(phi: np.ndarray, vmax: float | None = None, floor: float = 0.1, ceiling: float = 0.8) -> np.ndarray:
    """Fill opacity growing linearly with |φ| / vmax from ``floor`` to ``ceiling``."""
    vmax = phi_scale(phi) if vmax is None else float(vmax)
    return floor + (ceiling - floor) * np.clip(np.abs(np.asarray(phi, float)) / vmax, 0.0, 1.0)
