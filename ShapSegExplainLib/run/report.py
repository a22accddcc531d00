"""``report.png``: axial, coronal and sagittal slices through the ROI with the players
coloured by φ over the CT, the ROI outline, a colour bar, and the top players as bars with
95 % intervals. Radiological display: the patient's right on the left of axial and
coronal views, anterior up in axial, head up in coronal and sagittal."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..colors import CMAP, phi_colors, phi_opacity, phi_scale

WINDOW = (40.0, 400.0)   # abdominal soft-tissue window: level, width (HU)
TOP_K = 12         # players in the bar chart
TOP_MARKED = 3     # players numbered on the slices


def _lps(array: np.ndarray, ct: sitk.Image) -> np.ndarray:
    """An array in the CT's SimpleITK layout, reoriented to LPS axes (z, y, x)."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(ct)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def _view_box(ids: np.ndarray, roi: np.ndarray, spacing_zyx: np.ndarray, context_id: int | None,
              margin_mm: float = 15.0, min_mm: float = 90.0) -> list[slice]:
    """The players around the ROI (context excluded) plus a margin, at least ``min_mm`` wide."""
    fine = (ids > 0) & (ids != (context_id + 1 if context_id is not None else -1))
    pts = np.argwhere(fine if fine.any() else roi)
    lo, hi = pts.min(0), pts.max(0) + 1
    centre = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2 + margin_mm / spacing_zyx, min_mm / 2 / spacing_zyx)
    return [slice(int(max(0, np.floor(c - h))), int(min(n, np.ceil(c + h))))
            for c, h, n in zip(centre, half, ids.shape)]


def _overlay(ids2d: np.ndarray, colors: np.ndarray, alpha: np.ndarray, context_id: int | None) -> np.ndarray:
    """RGBA image of the players (context and non-player voxels transparent)."""
    lut = np.zeros((len(colors) + 1, 4))
    lut[1:, :3], lut[1:, 3] = colors, alpha
    if context_id is not None:
        lut[context_id + 1, 3] = 0.0
    return lut[ids2d]


def _mark_top(ax, ids2d: np.ndarray, extent, origin: str, top: list[int]) -> None:
    """Rank numbers (1 = largest |φ|) at the centroid of each top player cut by this slice."""
    left, right, bottom, top_edge = extent
    rows, cols = ids2d.shape
    for rank, pid in enumerate(top, start=1):
        pts = np.argwhere(ids2d == pid + 1)
        if len(pts) < 4:
            continue
        r, c = pts.mean(0)
        x = left + (c + 0.5) / cols * (right - left)
        y = (top_edge + (r + 0.5) / rows * (bottom - top_edge)) if origin == "upper" else \
            (bottom + (r + 0.5) / rows * (top_edge - bottom))
        ax.text(x, y, str(rank), ha="center", va="center", fontsize=8, fontweight="bold",
                bbox={"boxstyle": "circle,pad=0.2", "facecolor": "white", "edgecolor": "0.2", "alpha": 0.85})


def _panel(ax, ct2d, ids2d, roi2d, extent, rgba, title, letters, origin):
    from skimage.segmentation import find_boundaries
    lvl, width = WINDOW
    ax.imshow(ct2d, cmap="gray", vmin=lvl - width / 2, vmax=lvl + width / 2, extent=extent, origin=origin,
              interpolation="nearest")
    ax.imshow(rgba, extent=extent, origin=origin, interpolation="nearest")
    edges = np.ma.masked_where(~find_boundaries(ids2d, mode="inner") | (ids2d == 0), np.ones(ids2d.shape))
    ax.imshow(edges, cmap="gray", vmin=0, vmax=1, alpha=0.35, extent=extent, origin=origin,
              interpolation="nearest")
    if roi2d.any():
        ax.contour(roi2d.astype(float), levels=[0.5], colors=["#ffd400"], linewidths=1.6, extent=extent,
                   origin=origin)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    left, right, top = letters
    kw = dict(transform=ax.transAxes, color="white", fontsize=9, fontweight="bold")
    ax.text(0.02, 0.5, left, va="center", **kw)
    ax.text(0.95, 0.5, right, va="center", **kw)
    ax.text(0.5, 0.93, top, ha="center", **kw)


def write_report(path: Path, ct: sitk.Image, ids_ct: np.ndarray, roi_ct: np.ndarray, rows: list[dict],
                 title: str, subtitle: str, unit: str) -> None:
    """Draw and save the report (matplotlib's Agg canvas; no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    hu = _lps(sitk.GetArrayFromImage(ct).astype(np.float32), ct)
    ids = _lps(ids_ct.astype(np.int32), ct)
    roi = _lps(roi_ct.astype(np.uint8), ct) > 0
    sp = np.asarray(sitk.DICOMOrient(ct, "LPS").GetSpacing(), float)[::-1]     # z, y, x
    phi = np.array([r["phi"] for r in rows])
    vmax = phi_scale(phi)
    context = next((r["id"] for r in rows if r["kind"] == "context"), None)
    colors, alpha = phi_colors(phi, vmax), phi_opacity(phi, vmax, floor=0.15, ceiling=0.75)
    box = _view_box(ids, roi, sp, context)
    top = [i for i in np.argsort(-np.abs(phi), kind="stable") if i != context][:TOP_MARKED]
    z, y, x = (int(round(v)) for v in np.argwhere(roi).mean(0))
    bz, by, bx = box
    ez = (bz.start * sp[0], bz.stop * sp[0])
    ey = (by.start * sp[1], by.stop * sp[1])
    ex = (bx.start * sp[2], bx.stop * sp[2])

    fig = Figure(figsize=(15, 8.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 4, height_ratios=[1.0, 0.9], width_ratios=[1, 1, 1, 0.06])
    views = [
        ("axial", (slice(z, z + 1), by, bx), [ex[0], ex[1], ey[1], ey[0]], "upper", ("R", "L", "A")),
        ("coronal", (bz, slice(y, y + 1), bx), [ex[0], ex[1], ez[0], ez[1]], "lower", ("R", "L", "S")),
        ("sagittal", (bz, by, slice(x, x + 1)), [ey[0], ey[1], ez[0], ez[1]], "lower", ("A", "P", "S")),
    ]
    for col, (name, sl, extent, origin, letters) in enumerate(views):
        ax = fig.add_subplot(grid[0, col])
        squeeze = lambda a: np.squeeze(a[sl], axis=["axial", "coronal", "sagittal"].index(name))  # noqa: E731
        ids2d = squeeze(ids)
        _panel(ax, squeeze(hu), ids2d, squeeze(roi), extent, _overlay(ids2d, colors, alpha, context),
               name, letters, origin)
        _mark_top(ax, ids2d, extent, origin, top)
    cax = fig.add_subplot(grid[0, 3])
    cb = fig.colorbar(ScalarMappable(Normalize(-vmax, vmax), CMAP), cax=cax)
    cb.set_label(f"φ ({unit})" if unit else "φ")
    _bars(fig.add_subplot(grid[1, :]), rows, colors, unit, top)
    fig.suptitle(f"{title}\n{subtitle}", fontsize=11)
    fig.savefig(path, dpi=110)


def _bars(ax, rows: list[dict], colors: np.ndarray, unit: str, marked: list[int]) -> None:
    """The top players by |φ| as horizontal bars with 95 % intervals, largest on top."""
    order = sorted(range(len(rows)), key=lambda i: -abs(rows[i]["phi"]))[:TOP_K][::-1]
    phi = [rows[i]["phi"] for i in order]
    err = [1.96 * rows[i]["se"] for i in order]
    ax.barh(range(len(order)), phi, xerr=err, color=[colors[i] for i in order], edgecolor="0.3", linewidth=0.5,
            error_kw={"ecolor": "0.2", "capsize": 3, "linewidth": 1})
    ax.set_yticks(range(len(order)))
    rank = {pid: k for k, pid in enumerate(marked, start=1)}
    ax.set_yticklabels([(f"[{rank[i]}] " if i in rank else "") + f"{rows[i]['name']}  ({rows[i]['ml']:.1f} mL)"
                        for i in order], fontsize=9)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_xlabel(f"Shapley value φ ({unit})  ·  bars: 95 % interval" if unit else
                  "Shapley value φ  ·  bars: 95 % interval")
    ax.set_title(f"top {len(order)} players by |φ| ([n]: numbered on the slices)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
