"""Draw docs/slicer_result.png: what a result looks like in 3D Slicer, from a real output folder.

The picture is made from the files the module loads (players.seg.nrrd via slicerio,
explanation.json, the CT) and laid out like Slicer's window: the module panel with the
results table, legend and faithfulness line on the left; the red (axial), yellow
(sagittal) and green (coronal) slice views with the players at opacity by |φ| on the right.
No Slicer is needed (this machine has none); colours and opacities are the module's own
(``result_view.segment_styles``).

  shapseg demo --out shapseg_demo
  python scripts/make_slicer_figure.py shapseg_demo --ct shapseg_demo/phantom_ct.nii.gz --out docs/slicer_result.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.patches import Rectangle

from ShapSegExplainLib.report.inputs import to_lps
from ShapSegExplainLib.report.slices import WINDOWS, view_box
from ShapSegExplainLib.panel.result_view import (faithfulness_text, legend_labels, legend_scale, legend_stops,
                                                 player_display, read_explanation, segment_styles, summary_text,
                                                 table_rows)

BG, PANEL, TEXT = "#1e1e1e", "#323232", "#e6e6e6"
VIEW_COLORS = {"red": "#f34a33", "yellow": "#edd54c", "green": "#6eb04b"}


def load(out: Path, ct_path: Path):
    import slicerio
    ct = sitk.ReadImage(str(ct_path))
    seg = slicerio.read_segmentation(str(out / "players.seg.nrrd"))
    ids = seg["voxels"].transpose(2, 1, 0).astype(np.int32)        # player id + 1, SimpleITK order
    roi = slicerio.read_segmentation(str(out / "roi.seg.nrrd"))
    layer = next(s["layer"] for s in roi["segments"] if s["id"] == "roi")
    voxels = roi["voxels"][layer] if roi["voxels"].ndim == 4 else roi["voxels"]     # (layer,) i, j, k
    roi_arr = voxels.transpose(2, 1, 0) == 1
    return ct, ids, roi_arr, read_explanation(out)


def slice_view(ax, name, hu, ids, roi, rgba_lut, outlined, sl, extent, origin, offset):
    from skimage.segmentation import find_boundaries
    axis = {"red": 0, "green": 1, "yellow": 2}[name]
    ct2d, ids2d, roi2d = (np.squeeze(a[sl], axis=axis) for a in (hu, ids, roi))
    lvl, width = WINDOWS["soft tissue"]
    ax.imshow(ct2d, cmap="gray", vmin=lvl - width / 2, vmax=lvl + width / 2, extent=extent, origin=origin,
              interpolation="nearest")
    ax.imshow(rgba_lut[ids2d], extent=extent, origin=origin, interpolation="nearest")
    lines = find_boundaries(ids2d, mode="inner") & (ids2d > 0)
    outline = rgba_lut[ids2d].copy()
    outline[..., 3] = np.where(lines & outlined[ids2d], 1.0, 0.0)       # Slicer: outline opacity 1 or 0
    ax.imshow(outline, extent=extent, origin=origin, interpolation="nearest")
    if roi2d.any():
        ax.contour(roi2d.astype(float), levels=[0.5], colors=["#ffd400"], linewidths=1.2, extent=extent, origin=origin)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("black")
    for s in ax.spines.values():
        s.set_color(VIEW_COLORS[name])
        s.set_linewidth(2)
    letter = {"red": "R", "yellow": "Y", "green": "G"}[name]
    ax.set_title(f" {letter}   {offset}", loc="left", fontsize=9, color="black", backgroundcolor=VIEW_COLORS[name],
                 pad=2)


def panel(ax, expl, rows, styles_by_id, vmax):
    """The module panel: settings, status, results summary, legend, table and faithfulness."""
    ax.set_facecolor(PANEL)
    ax.set_xticks([])
    ax.set_yticks([])
    s = expl["settings"]
    y = 0.975

    def line(text, size=8.5, color=TEXT, weight="normal", dy=0.028, x=0.03):
        nonlocal y
        ax.text(x, y, text, transform=ax.transAxes, fontsize=size, color=color, weight=weight, va="top")
        y -= dy
    line("ShapSeg Explain", size=11, weight="bold", dy=0.04)
    for head, body in (("Inputs", f"CT {Path(s['ct']).name} · demo model · target {s['target']}"),
                       ("Region", "Box (ROI) around the finding" if s.get("roi_box_ras") else "drawn region"),
                       ("Players", f"organ-aware supervoxels, {s['spacing_mm']:g} mm, margin {s['margin_mm']:g} mm"),
                       ("What to explain", f"{expl['value']['name']}{' (normalised)' if s['normalized'] else ''}")):
        line(f"▾ {head}", weight="bold", dy=0.022)
        line(f"   {body}", size=8, color="#c8c8c8", dy=0.03)
    ax.add_patch(Rectangle((0.03, y - 0.028), 0.94, 0.026, transform=ax.transAxes,
                                                            facecolor="#2f7fd1"))
    ax.text(0.5, y - 0.015, "Done. 100%", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="white")
    y -= 0.05
    line("▾ Results", weight="bold", dy=0.024)
    words, text = summary_text(expl).split(" "), ""
    for w in words:                                   # wrap the summary
        if len(text) + len(w) > 58:
            line(text, size=7.5, color="#c8c8c8", dy=0.02)
            text = ""
        text += w + " "
    line(text, size=7.5, color="#c8c8c8", dy=0.03)
    stops = legend_stops(vmax, 64)
    for (p0, c0), (p1, _) in zip(stops[:-1], stops[1:]):
        ax.add_patch(Rectangle((0.03 + 0.94 * p0, y - 0.02), 0.94 * (p1 - p0) + 0.001,
                                                                0.018, transform=ax.transAxes, facecolor=c0, lw=0))
    lo, mid, hi = legend_labels(vmax, expl["value"].get("unit", ""))
    for x, t, ha in ((0.03, lo, "left"), (0.5, mid, "center"), (0.97, hi, "right")):
        ax.text(x, y - 0.027, t, transform=ax.transAxes, fontsize=7, color=TEXT, ha=ha, va="top")
    y -= 0.065
    cols = (0.05, 0.09, 0.50, 0.68, 0.83)
    for x, h in zip(cols[1:], ("Player", "Organ", "phi", "+/-SE")):
        ax.text(x, y, h, transform=ax.transAxes, fontsize=7.5, color=TEXT, weight="bold", va="top")
    y -= 0.026
    for r in rows[:14]:
        rgb, _ = styles_by_id[r["segment_id"]]
        ax.add_patch(Rectangle((0.03, y - 0.016), 0.035, 0.014,
                                                                transform=ax.transAxes, facecolor=rgb))
        for x, t in zip(cols[1:], (r["Player"], r["Organ"] or "-", f"{r['phi']:+.3f}", f"{r['+/-SE']:.3f}")):
            ax.text(x, y, t, transform=ax.transAxes, fontsize=7.2, color=TEXT, va="top")
        y -= 0.022
    y -= 0.01
    line("Faithfulness:", size=7.5, weight="bold", dy=0.02)
    line(faithfulness_text(expl.get("faithfulness")), size=7, color="#c8c8c8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--ct", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/slicer_result.png"))
    a = ap.parse_args(argv)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ct, ids_ct, roi_ct, expl = load(a.out_dir, a.ct)
    phi = np.array([p["phi"] for p in expl["players"]])
    vmax = legend_scale(expl["players"])
    styles = segment_styles(phi, [p["se"] for p in expl["players"]], [p["kind"] for p in expl["players"]])
    lut = np.zeros((len(phi) + 1, 4))
    for p, (rgb, op) in zip(expl["players"], styles):
        lut[p["id"] + 1] = (*rgb, op)
    outlined = np.zeros(len(phi) + 1, bool)
    outlined[1:] = [s.outlined for s in player_display(expl["players"])]
    rows = table_rows(expl["players"])
    styles_by_id = {f"player_{p['id']}": s for p, s in zip(expl["players"], styles)}

    hu = to_lps(sitk.GetArrayFromImage(ct).astype(np.float32), ct)
    ids = to_lps(ids_ct, ct)
    roi = to_lps(roi_ct.astype(np.uint8), ct) > 0
    sp = np.asarray(sitk.DICOMOrient(ct, "LPS").GetSpacing(), float)[::-1]
    bz, by, bx = view_box(ids, roi, sp, None, margin_mm=25.0, min_mm=110.0)
    z, y, x = (int(round(v)) for v in np.argwhere(roi).mean(0))
    ez, ey, ex = ((b.start * s, b.stop * s) for b, s in zip((bz, by, bx), sp))

    fig = Figure(figsize=(14, 7.6), dpi=110, facecolor=BG)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 4, width_ratios=[1.25, 1, 1, 1], left=0.01, right=0.99, top=0.95, bottom=0.03,
                            wspace=0.04)
    panel(fig.add_subplot(grid[0, 0]), expl, rows, styles_by_id, vmax)
    views = (("red", (slice(z, z + 1), by, bx), [ex[0], ex[1], ey[1], ey[0]], "upper", "axial"),
             ("yellow", (bz, by, slice(x, x + 1)), [ey[0], ey[1], ez[0], ez[1]], "lower", "sagittal"),
             ("green", (bz, slice(y, y + 1), bx), [ex[0], ex[1], ez[0], ez[1]], "lower", "coronal"))
    for col, (name, sl, extent, origin, offset) in enumerate(views, start=1):
        slice_view(fig.add_subplot(grid[0, col]), name, hu, ids, roi, lut, outlined, sl, extent, origin, offset)
    fig.text(0.99, 0.975, "3D Slicer · ShapSeg Explain result (drawn from the real output files)", ha="right",
             color="#9a9a9a", fontsize=8)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110, facecolor=BG)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
