"""The face-centred cubic (FCC) lattice and its Voronoi cells (rhombic dodecahedra).

Lattice points are ``a·(i, j, k)`` with ``i + j + k`` even and ``a = D/√2``, so the
nearest-neighbour distance is ``D`` and every cell has volume ``D³/√2``.

Hand-written: no maintained Python library offers an FCC nearest-point quantiser. The
decoder is Conway & Sloane's for the D3 lattice (Sphere Packings, ch. 20): round every
coordinate; if the sum is odd, round the coordinate that was furthest from an integer
the other way. It is exact (tested against brute force).
"""
from __future__ import annotations

import numpy as np


def fcc_nearest(points_mm: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Integer lattice coordinates (n, 3), ``i+j+k`` even, of the FCC point nearest to each point."""
    u = np.asarray(points_mm, dtype=np.float64) / (spacing_mm / np.sqrt(2.0))
    r = np.rint(u)
    odd = (r.sum(axis=-1) % 2) != 0
    if odd.any():
        err = u[odd] - r[odd]
        worst = np.argmax(np.abs(err), axis=-1)
        rows = np.arange(worst.size)
        step = np.where(err[rows, worst] >= 0, 1.0, -1.0)
        fixed = r[odd]
        fixed[rows, worst] += step
        r[odd] = fixed
    return r.astype(np.int64)


def fcc_point_mm(coords: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Positions in mm of lattice points given by integer coordinates."""
    return np.asarray(coords, dtype=np.float64) * (spacing_mm / np.sqrt(2.0))


def fcc_cell_volume_mm3(spacing_mm: float) -> float:
    """Volume of one Voronoi cell (rhombic dodecahedron): D³/√2."""
    return spacing_mm ** 3 / np.sqrt(2.0)


def fcc_cells(shape: tuple[int, int, int], voxel_mm, centre_index, spacing_mm: float) -> np.ndarray:
    """Cell coordinates (*shape, 3) of every voxel of a grid, one lattice point at ``centre_index``.

    Positions are voxel centres in physical mm (``(index - centre)·voxel_mm``), so anisotropic
    voxels are assigned by true Euclidean distance."""
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    pts = (idx - np.asarray(centre_index, float)) * np.asarray(voxel_mm, float)
    return fcc_nearest(pts, spacing_mm).reshape(*shape, 3)


def encode_cells(coords: np.ndarray) -> np.ndarray:
    """One non-negative int64 key per cell coordinate triple (order-preserving, lexicographic)."""
    c = coords - coords.reshape(-1, 3).min(axis=0)
    span = c.reshape(-1, 3).max(axis=0) + 1
    return (c[..., 0] * span[1] + c[..., 1]) * span[2] + c[..., 2]
