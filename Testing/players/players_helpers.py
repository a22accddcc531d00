"""Independent checks of player maps, shared by the phantom and real-CT tests."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ShapSegExplainLib.players.lattice import fcc_nearest
from ShapSegExplainLib.players.maps import PlayerMap


def assert_partition(pmap: PlayerMap, image_in_crop: np.ndarray) -> None:
    """Every image voxel of the crop has exactly one player id in 0..M-1, every id is used,
    padding has none, and the fine players lie inside the support."""
    ids = pmap.ids
    assert ids.shape == image_in_crop.shape
    assert (ids[image_in_crop] >= 0).all(), "gap: an image voxel without a player"
    assert (ids[~image_in_crop] == -1).all(), "padding must not be a player"
    counts = np.bincount(ids[ids >= 0], minlength=pmap.n_players)
    assert counts.size == pmap.n_players and (counts > 0).all(), "every player non-empty, ids 0..M-1"
    assert [p.id for p in pmap.players] == list(range(pmap.n_players))
    kinds = np.array([p.kind for p in pmap.players])
    fine = np.isin(ids, np.flatnonzero(kinds != "context"))
    assert np.array_equal(fine, pmap.support), "fine players cover exactly the support"
    assert (kinds == "context").sum() <= 1 and (kinds[-1] == "context" or "context" not in kinds)


def assert_connected(pmap: PlayerMap) -> None:
    """Each fine player is one face-connected piece."""
    for p in pmap.players:
        if p.kind == "context":
            continue
        _, n = ndimage.label(pmap.ids == p.id)
        assert n == 1, f"player {p.id} ({p.name}) has {n} pieces"


def purities(pmap: PlayerMap) -> np.ndarray:
    """Share of each fine player's voxels in its majority organ, counted independently."""
    out = []
    for p in pmap.players:
        if p.kind != "context":
            _, c = np.unique(pmap.anatomy.codes[pmap.ids == p.id], return_counts=True)
            out.append(c.max() / c.sum())
    return np.array(out)


def assert_same(a: PlayerMap, b: PlayerMap) -> None:
    assert np.array_equal(a.ids, b.ids)
    assert a.players == b.players


def assert_nearest_lattice(pmap: PlayerMap, spacing, sample: int = 4000, seed: int = 0) -> None:
    """FCC players with no merged fragments: all voxels of a player share one nearest lattice
    point, checked by brute force over every lattice point near each sampled voxel."""
    rng = np.random.default_rng(seed)
    d = pmap.settings.spacing_mm
    a = d / np.sqrt(2.0)
    vox = np.argwhere(pmap.support)
    vox = vox[rng.choice(len(vox), size=min(sample, len(vox)), replace=False)]
    pts = (vox - np.asarray(pmap.roi_centre)) * np.asarray(spacing, float)
    near = brute_force_nearest(pts, d)
    assigned = fcc_nearest(pts, d)
    dist_b = np.linalg.norm(pts - near * a, axis=1)
    dist_a = np.linalg.norm(pts - assigned * a, axis=1)
    assert np.allclose(dist_a, dist_b, atol=1e-9)
    ids = pmap.ids[tuple(vox.T)]
    for pid in np.unique(ids):
        keys = {tuple(c) for c in assigned[ids == pid]}
        assert len(keys) == 1, f"player {pid} spans lattice cells {keys}"


def brute_force_nearest(pts_mm: np.ndarray, spacing_mm: float, reach: int = 3) -> np.ndarray:
    """Nearest FCC lattice coordinates by trying every lattice point within ``reach`` of the rounded point."""
    a = spacing_mm / np.sqrt(2.0)
    u = pts_mm / a
    base = np.floor(u).astype(np.int64)
    off = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cand = base[:, None, :] + off[None]
    cand_ok = (cand.sum(-1) % 2) == 0
    d2 = ((cand * a - pts_mm[:, None, :]) ** 2).sum(-1)
    d2[~cand_ok] = np.inf
    return cand[np.arange(len(pts_mm)), d2.argmin(1)]


def interior_cell_volumes(pmap: PlayerMap, spacing) -> np.ndarray:
    """Volumes (mm³) of FCC players that touch neither the support's edge nor the crop's."""
    touch_edge = ndimage.binary_dilation(~pmap.support, border_value=1) & pmap.support
    whole = [p.id for p in pmap.players if p.kind == "fcc" and not touch_edge[pmap.ids == p.id].any()]
    return np.array([(pmap.ids == i).sum() for i in whole]) * float(np.prod(spacing))
