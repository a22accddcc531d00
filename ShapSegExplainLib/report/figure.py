"""``report.png``: one page that says what drives the value and how far to trust it.

Top row: axial, coronal and sagittal slices (cut where the ROI and the top players are)
with the players over the CT by the shared display rules, and, for a coarse-to-fine run,
the first (organ-level) answer beside them; bottom row: the top players as bars, the
deletion/insertion curves, the convergence. Drawn from the output files alone
(``report.inputs``), so the run and ``shapseg report OUT`` draw the same picture.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..display import coarse_players, player_styles, resolved_count
from .inputs import ReportInputs, read_inputs
from .panels import bars, convergence, curves
from .slices import choose_slices, ct_window, draw_view, view_box, views

DPI = 110


def write_report(folder: str | Path, to: str | Path | None = None, ct: str | Path | None = None,
                 window: str | None = None, show_uncertain: bool = False) -> Path:
    """Draw the report of a finished (or just written) result folder; returns the PNG path."""
    inputs = read_inputs(folder, ct)
    path = Path(to) if to is not None else Path(folder) / "report.png"
    fig = draw_report(inputs, window, show_uncertain)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def draw_report(inputs: ReportInputs, window: str | None = None, show_uncertain: bool = False):
    """The figure (matplotlib's Agg canvas; no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    expl, rows = inputs.expl, inputs.rows
    unit = expl["value"].get("unit", "")
    styles = player_styles([r["phi"] for r in rows], [r["se"] for r in rows], [r["kind"] for r in rows],
                           show_uncertain)
    coarse = coarse_players(rows) if expl.get("levels") else None
    win = ct_window(expl["target"]["name"], window)
    box = view_box(inputs.ids, inputs.roi, inputs.spacing, inputs.context_label)
    at = choose_slices(inputs.ids, inputs.roi, box, styles)
    cut = views(inputs.ids, inputs.roi, inputs.hu, inputs.spacing, box, at)

    n_top = 4 if coarse else 3
    fig = Figure(figsize=(16, 9), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, n_top + 1, height_ratios=[1.0, 0.85], width_ratios=[1] * n_top + [0.05])
    for col, view in enumerate(cut):
        draw_view(fig.add_subplot(grid[0, col]), view, styles, win, f"{view.name} (slice {at[col] + 1})")
    if coarse:
        _coarse_view(fig.add_subplot(grid[0, 3]), coarse, cut[0], win, show_uncertain)
    _colorbar(fig, grid[0, n_top], rows, unit)
    bottom = grid[1, :].subgridspec(1, 3, width_ratios=[1.5, 1, 1])
    bars(fig.add_subplot(bottom[0, 0]), rows, styles, unit)
    curves(fig.add_subplot(bottom[0, 1]), expl.get("faithfulness"), unit)
    convergence(fig.add_subplot(bottom[0, 2]), expl)
    title, subtitle = report_titles(expl)
    name, level, width = win
    fig.suptitle(f"{title}\n{subtitle}\nCT window: {name} (L {level:g} / W {width:g} HU) · "
                 f"players whose 95 % interval contains 0 are {'faint' if show_uncertain else 'not drawn'}; "
                 "white outlines: the top players", fontsize=10)
    return fig


def _coarse_view(ax, coarse: dict, fine_view, win, show_uncertain: bool) -> None:
    """The axial cut coloured by the first level's players (its own colour scale)."""
    from dataclasses import replace
    lut = np.concatenate([[0], coarse["index"] + 1])
    styles = player_styles(coarse["phi"], coarse["se"], coarse["kinds"], show_uncertain)
    view = replace(fine_view, ids=lut[fine_view.ids])
    scale = max((abs(p) for p, k in zip(coarse["phi"], coarse["kinds"]) if k != "context"), default=0.0)
    named = resolved_count(coarse["phi"], coarse["se"], [k != "context" for k in coarse["kinds"]])
    draw_view(ax, view, styles, win, f"first answer: {len(coarse['names'])} coarse players (axial)\n"
                                     f"own colour scale ±{scale:.3g} · "
                                     + (f"top {named} resolved" if named else "not resolved"))


def _colorbar(fig, cell, rows, unit: str) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from ..colors import CMAP
    from ..display import color_scale
    vmax = color_scale([r["phi"] for r in rows], [r["kind"] != "context" for r in rows])
    cb = fig.colorbar(ScalarMappable(Normalize(-vmax, vmax), CMAP), cax=fig.add_subplot(cell))
    cb.set_label(f"φ ({unit})" if unit else "φ")


def report_titles(expl: dict) -> tuple[str, str]:
    """What was explained, and how (players, coalitions, estimator, cost)."""
    v, s, st = expl["value"], expl["shapley"], expl["stats"]
    unit = v.get("unit", "")
    what = f"{v['name']}{' (normalised)' if v['normalized'] else ''} of {expl['target']['name']}"
    title = (f"What drives {what} in the ROI ({expl['roi']['ml']:.1f} mL)?  "
             f"v(all present) = {expl['full_value']:.3g}{' ' + unit if unit else ''}, "
             f"v(all absent) = {expl['base_value']:.3g}; Σφ = their difference")
    how = "exact" if s["exact"] else f"KernelSHAP, convergence ratio {s['convergence_ratio']:.3f}"
    if expl.get("levels"):
        how = f"coarse to fine, {len(expl['levels'])} levels, " + how
    subtitle = (f"{expl['players_summary']['players']} {expl['settings']['players']} players · "
                f"{s['n_evaluations']} coalitions ({how}) · {st['tile_forwards']} tile forwards "
                f"(without the cache {st['tile_forwards_roi']}) · red raises the value, blue lowers it")
    return title, subtitle


def draw_axial(ax, folder: str | Path, title: str) -> None:
    """The report's axial view of a result folder on ``ax`` (a study's thumbnail grid)."""
    inputs = read_inputs(folder)
    rows = inputs.rows
    styles = player_styles([r["phi"] for r in rows], [r["se"] for r in rows], [r["kind"] for r in rows], False)
    box = view_box(inputs.ids, inputs.roi, inputs.spacing, inputs.context_label)
    at = choose_slices(inputs.ids, inputs.roi, box, styles)
    view = views(inputs.ids, inputs.roi, inputs.hu, inputs.spacing, box, at)[0]
    draw_view(ax, view, styles, ct_window(inputs.expl["target"]["name"]), title)
