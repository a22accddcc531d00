"""The report's slices: where to cut, which CT window, and one view drawn with the shared
display rules (``display.py``). Radiological display: the patient's right on the left of
axial and coronal views, anterior up in axial, head up in coronal and sagittal."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..display import PlayerStyle, outlines_in_view

# (level, width) in HU
WINDOWS = {"soft tissue": (40.0, 400.0), "bone": (400.0, 1800.0), "lung": (-600.0, 1500.0)}
BONE = re.compile(r"vertebra|rib|sacrum|femur|hip|humerus|scapula|clavic|sternum|skull|costal|bone|spine|patella|"
                  r"tibia|fibula|radius|ulna|pelvi", re.I)
LUNG = re.compile(r"lung|trachea|bronch|airway", re.I)
VIEW_MARGIN_MM, VIEW_MIN_MM = 15.0, 90.0


def ct_window(target: str, name: str | None = None) -> tuple[str, float, float]:
    """(name, level, width): ``name`` if given, else from the target: bone for bones, lung for
    airways and lungs, soft tissue otherwise."""
    if name is None:
        name = "bone" if BONE.search(target) else "lung" if LUNG.search(target) else "soft tissue"
    if name not in WINDOWS:
        from ..errors import ShapSegError
        raise ShapSegError(f"unknown CT window {name!r}; choose from {', '.join(WINDOWS)}", "bad_input")
    return (name, *WINDOWS[name])


def view_box(ids: np.ndarray, roi: np.ndarray, spacing: np.ndarray, context_label: int | None,
             margin_mm: float = VIEW_MARGIN_MM, min_mm: float = VIEW_MIN_MM) -> list[slice]:
    """The drawn players around the ROI plus a margin, at least ``min_mm`` wide."""
    fine = (ids > 0) & (ids != (context_label if context_label is not None else -1))
    pts = np.argwhere(fine if fine.any() else roi if roi.any() else np.ones_like(roi))
    lo, hi = pts.min(0), pts.max(0) + 1
    centre = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2 + margin_mm / spacing, min_mm / 2 / spacing)
    return [slice(int(max(0, np.floor(c - h))), int(min(n, np.ceil(c + h))))
            for c, h, n in zip(centre, half, ids.shape)]


def choose_slices(ids: np.ndarray, roi: np.ndarray, box: list[slice], styles: list[PlayerStyle]) -> tuple[int, ...]:
    """Per axis, the slice (inside ``box``) that best shows the ROI and the numbered players:
    the sum of their shares cut by the slice (the ROI weighs 1, a numbered player |φ|-rank
    weights 1, 1/2, 1/3), ties to the ROI's centre."""
    sub_ids, sub_roi = ids[tuple(box)], roi[tuple(box)]
    masks = [(1.0, sub_roi)] + [(1.0 / s.rank, sub_ids == pid + 1) for pid, s in enumerate(styles) if s.marked]
    centre = np.argwhere(sub_roi).mean(0) if sub_roi.any() else (np.array(sub_ids.shape) - 1) / 2
    out = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        score = np.zeros(sub_ids.shape[axis])
        for weight, mask in masks:
            n = mask.sum()
            if n:
                score += weight * mask.sum(axis=others) / n
        score -= 1e-6 * np.abs(np.arange(score.size) - centre[axis])
        out.append(box[axis].start + int(np.argmax(score)))
    return tuple(out)


@dataclass
class View:
    name: str
    hu: np.ndarray
    ids: np.ndarray
    roi: np.ndarray
    extent: list[float]
    origin: str
    letters: tuple[str, str, str]


def views(ids: np.ndarray, roi: np.ndarray, hu: np.ndarray, spacing: np.ndarray, box: list[slice],
          at: tuple[int, int, int]) -> list[View]:
    """Axial, coronal and sagittal cuts through ``at`` (z, y, x) inside ``box``."""
    bz, by, bx = box
    ez, ey, ex = ((b.start * s, b.stop * s) for b, s in zip(box, spacing))
    z, y, x = at
    specs = [("axial", (z, by, bx), [ex[0], ex[1], ey[1], ey[0]], "upper", ("R", "L", "A")),
             ("coronal", (bz, y, bx), [ex[0], ex[1], ez[0], ez[1]], "lower", ("R", "L", "S")),
             ("sagittal", (bz, by, x), [ey[0], ey[1], ez[0], ez[1]], "lower", ("A", "P", "S"))]
    return [View(name, hu[sl], ids[sl], roi[sl], extent, origin, letters)
            for name, sl, extent, origin, letters in specs]


def overlay(ids2d: np.ndarray, styles: list[PlayerStyle]) -> np.ndarray:
    """RGBA of the players' fills (label = id + 1; 0 and undrawn players transparent)."""
    lut = np.zeros((len(styles) + 1, 4))
    for pid, s in enumerate(styles):
        lut[pid + 1] = (*s.rgb, s.fill)
    return lut[ids2d]


def draw_view(ax, view: View, styles: list[PlayerStyle], window: tuple[str, float, float], title: str) -> None:
    """CT, filled players, thin light outlines of the top players, the ROI in yellow,
    numbers on the marked players, orientation letters."""
    _name, level, width = window
    kw = dict(extent=view.extent, origin=view.origin, interpolation="nearest")
    ax.imshow(view.hu, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, **kw)
    ax.imshow(overlay(view.ids, styles), **kw)
    kept, _mask = outlines_in_view(view.ids, styles)
    for pid in kept:
        ax.contour((view.ids == pid + 1).astype(float), levels=[0.5], colors=["white"], alpha=0.85,
                   linewidths=0.7, linestyles="dashed" if styles[pid].uncertain else "solid",
                   extent=view.extent, origin=view.origin)
    if view.roi.any():
        ax.contour(view.roi.astype(float), levels=[0.5], colors=["#ffd400"], linewidths=1.4, extent=view.extent,
                   origin=view.origin)
    _numbers(ax, view, styles)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    left, right, top = view.letters
    text = dict(transform=ax.transAxes, color="white", fontsize=8, fontweight="bold")
    ax.text(0.02, 0.5, left, va="center", **text)
    ax.text(0.95, 0.5, right, va="center", **text)
    ax.text(0.5, 0.93, top, ha="center", **text)


def _numbers(ax, view: View, styles: list[PlayerStyle]) -> None:
    """Rank numbers at the centroid of each marked player cut by this slice."""
    left, right, bottom, top = view.extent
    rows, cols = view.ids.shape
    for pid, s in enumerate(styles):
        pts = np.argwhere(view.ids == pid + 1) if s.marked else ()
        if len(pts) < 2:
            continue
        r, c = pts.mean(0)
        x = left + (c + 0.5) / cols * (right - left)
        y = (top + (r + 0.5) / rows * (bottom - top)) if view.origin == "upper" else \
            (bottom + (r + 0.5) / rows * (top - bottom))
        ax.text(x, y, str(s.rank), ha="center", va="center", fontsize=7, fontweight="bold",
                bbox={"boxstyle": "circle,pad=0.15", "facecolor": "white", "edgecolor": "0.2", "alpha": 0.85})
