"""What the Slicer panel shows about a result, computed without Slicer: the table, which
players are visible under "top k / hide |φ| below t" and "show uncertain players", each
segment's colour, fill and outline (the report's rules, ``display.py``), the colour legend,
the faithfulness line and the status line of a running job.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..colors import phi_colors
from ..display import OUTLINE_OPACITY, PlayerStyle, color_scale, player_styles, resolution_lines  # noqa: F401

TABLE_COLUMNS = ("Player", "Organ", "phi", "+/-SE", "mL", "Rank")
SEGMENT_ID = "player_{}"          # the segment IDs of players.seg.nrrd (outputs.write_players_seg)


def read_explanation(out_dir: str | Path) -> dict:
    """``explanation.json`` of a finished run."""
    return json.loads((Path(out_dir) / "explanation.json").read_text())


def compact_explanation(expl: dict) -> str:
    """``explanation.json`` without its sampling history, as one line: what a result node keeps
    as an attribute, so a saved scene opened elsewhere (without the result folder) still has
    the summary, the legend and the row jumps."""
    keep = {k: v for k, v in expl.items() if k not in ("convergence", "out")}
    if isinstance(keep.get("shapley"), dict):
        keep["shapley"] = {k: v for k, v in keep["shapley"].items() if k != "history"}
    return json.dumps(keep, separators=(",", ":"))


def stored_explanation(folder: str | None, stored: str | None) -> dict | None:
    """A result node's explanation: from its folder when it is still there, else from the
    copy stored on the node; None if neither can be read."""
    if folder:
        try:
            return {**read_explanation(folder), "out": folder}
        except (OSError, ValueError):
            pass
    if stored:
        try:
            expl = json.loads(stored)
        except ValueError:
            return None
        return {**expl, "out": folder} if isinstance(expl, dict) and "players" in expl else None
    return None


def segment_id(player_id: int) -> str:
    return SEGMENT_ID.format(int(player_id))


def table_rows(players: list[dict]) -> list[dict]:
    """One row per player, largest φ first: the columns of the panel's table plus the
    segment ID and RAS centroid that a selected row jumps to."""
    rows = sorted(players, key=lambda r: (-r.get("phi", 0.0), r["id"]))
    return [{"Player": r["name"], "Organ": r.get("organ") or "", "phi": float(r.get("phi", 0.0)),
             "+/-SE": _number(r.get("se")), "mL": float(r.get("ml", 0.0)), "Rank": int(r.get("rank", i + 1)),
             "segment_id": segment_id(r["id"]), "centroid_ras": r.get("centroid_ras")}
            for i, r in enumerate(rows)]


def _number(x) -> float:
    """A stored number; NaN for null (a run stopped inside its first design has no SE yet)."""
    return float("nan") if x is None else float(x)


def visible_players(phi, top_k: int = 0, min_abs: float = 0.0, styles=None) -> np.ndarray:
    """Which players stay shown: the ``top_k`` largest |φ| (0 = all) with |φ| ≥ ``min_abs``,
    and, given their display ``styles``, only those the shared rules draw (an uncertain player
    only with "show uncertain players"; never the context)."""
    a = np.abs(np.asarray(phi, float))
    keep = a >= min_abs
    if top_k and top_k < a.size:
        order = np.argsort(-a, kind="stable")
        top = np.zeros(a.size, bool)
        top[order[:top_k]] = True
        keep &= top
    if styles is not None:
        keep &= np.array([s.fill > 0 for s in styles], bool)
    return keep


def player_display(players: list[dict], phi=None, se=None, show_uncertain: bool = False) -> list[PlayerStyle]:
    """The shared display rules (``display.player_styles``) for a result's players, with the
    current φ and SE (a live run's partial values) or the players' own."""
    phi = [p.get("phi", 0.0) for p in players] if phi is None else phi
    se = [_number(p.get("se", 0.0)) for p in players] if se is None else se
    return player_styles(phi, se, [p.get("kind", "player") for p in players], show_uncertain)


def segment_styles(phi, se=None, kinds=None) -> list[tuple[tuple[float, float, float], float]]:
    """(RGB, 2D fill opacity) per player: colour on the diverging map, opacity growing with |φ|
    (0 for the context, and for an uncertain player outside the top ones)."""
    return [(s.rgb, s.fill) for s in player_styles(phi, se, kinds)]


def styles_by_label(players: list[dict], phi, se=None) -> dict[int, tuple[tuple[float, float, float], float]]:
    """(RGB, fill opacity) keyed by label value (player id + 1, as in the live preview map)."""
    styles = segment_styles(phi, se, [p.get("kind", "player") for p in players])
    return {p["id"] + 1: style for p, style in zip(players, styles)}


def legend_scale(players: list[dict]) -> float:
    """The colour scale's half-width of a result: max |φ| over its drawn (non-context) players."""
    return color_scale([p.get("phi", 0.0) for p in players], [p.get("kind") != "context" for p in players])


def legend_stops(vmax: float, n: int = 9) -> list[tuple[float, str]]:
    """(position in [0, 1], '#rrggbb') along the legend, from −vmax (0) to +vmax (1)."""
    values = np.linspace(-vmax, vmax, n)
    return [(float(i / (n - 1)), "#%02x%02x%02x" % tuple(int(round(255 * c)) for c in rgb))
            for i, rgb in enumerate(phi_colors(values, vmax))]


def legend_stylesheet(vmax: float) -> str:
    """A Qt style sheet that paints the legend bar with the same colours as the segments."""
    stops = ", ".join(f"stop:{p:.3f} {c}" for p, c in legend_stops(vmax))
    return f"background: qlineargradient(x1:0, y1:0, x2:1, y2:0, {stops}); border: 1px solid #888;"


def legend_labels(vmax: float, unit: str = "") -> tuple[str, str, str]:
    """The texts under the legend's left end, centre and right end."""
    u = f" {unit}" if unit else ""
    return f"-{vmax:.3g}{u} (lowers)", "0", f"+{vmax:.3g}{u} (raises)"


def faithfulness_text(faith: dict | None) -> str:
    """One line of the faithfulness numbers (empty when they were not computed)."""
    if not faith:
        return ""
    parts = [f"AOPC {faith['aopc']:.3g}", f"ABPC {faith['abpc']:.3g}",
             f"deletion AUC {faith['deletion_auc']:.3g}", f"insertion AUC {faith['insertion_auc']:.3g}"]
    if faith.get("anatomical_alignment") is not None:
        parts.append(f"anatomical alignment {faith['anatomical_alignment']:.0%}")
    return " · ".join(parts)


def summary_text(expl: dict) -> str:
    """The result in one sentence: what was explained, v(N), v(∅), how, at what cost; then
    what may be named (``display.resolution_lines``)."""
    v, s, st = expl["value"], expl["shapley"], expl["stats"]
    unit = f" {v['unit']}" if v.get("unit") else ""
    ratio = s.get("convergence_ratio")
    how = "exact" if s["exact"] else ("KernelSHAP, stopped in its first design" if ratio is None
                                      else f"KernelSHAP, ratio {ratio:.3f}")
    return (f"{v['name']}{' (normalised)' if v['normalized'] else ''} of {expl['target']['name']}: "
            f"v(all) = {expl['full_value']:.3g}{unit}, v(none) = {expl['base_value']:.3g}{unit}; "
            f"{len(expl['players'])} players, {s['n_evaluations']} coalitions ({how}), "
            f"{st['tile_forwards']} tile forwards, {st['seconds']:.0f} s\n" + "\n".join(resolution_lines(expl["players"])))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def status_text(state) -> str:
    """The status line of a running job (a ``worker_events.RunState``)."""
    if state.outcome == "error":
        return f"Failed: {state.message}"
    if state.outcome == "cancelled":
        return "Cancelled; nothing was written."
    if state.outcome == "result":
        return "Done."
    text = f"{state.phase}: {state.message}" if state.message else state.phase
    if state.phase in ("shapley", "faithfulness") and state.total:
        text += f" ({state.done}/{state.total}"
        if state.ratio is not None:
            text += f", convergence ratio {state.ratio:.3f}"
        text += f", about {format_duration(state.eta_seconds())} left)"
    return text
