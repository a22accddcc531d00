"""What is drawn of each player, one definition for ``report.png``, ``players.seg.nrrd`` and
the Slicer overlay, so that they agree at any player count.

A result may have hundreds of small players, most with a φ near 0 or an interval that
contains 0. Drawing all of them (fill and outline) hides the CT and the few that matter, so:

* the colour scale is max |φ| over the *drawn* players (the context, never drawn, does not
  squeeze every colour towards white);
* fill opacity grows with |φ| from almost nothing;
* a player whose 95 % interval contains 0 is *uncertain*: not filled, not outlined (the
  Slicer panel hides it behind a toggle);
* only the top players are outlined, thin and light (the report caps the outline pixels
  of a view at ``MAX_OUTLINE_SHARE`` by dropping the lowest-ranked outlines first);
* only *resolved* drivers are numbered (``resolved_count``): a reader takes a number for
  "a reason for this finding", so a player whose interval overlaps the next one's is never
  numbered, and a result with none resolved says so in words (``NOT_RESOLVED``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .colors import phi_colors, phi_opacity, phi_scale

Z95 = 1.96
TOP_MARKED = 3          # numbered on the slices, always drawn
TOP_OUTLINED = 5        # outlined (if their interval excludes 0, or numbered)
FILL = (0.04, 0.5)      # fill opacity at φ = 0 and at |φ| = the colour scale (the CT stays visible)
UNCERTAIN_FILL = 0.06   # an uncertain player's fill when the user asks to see them
MAX_OUTLINE_SHARE = 0.06   # at most this share of a report view's voxels is outline
OUTLINE_OPACITY = 1.0   # Slicer's 2D outline of an outlined player (its own colour, Slicer's thin line)


NOT_RESOLVED = "not resolved: the top players cannot be told apart yet (intervals overlap)"


@dataclass(frozen=True)
class PlayerStyle:
    rgb: tuple[float, float, float]
    fill: float            # 2D fill opacity, 0 = not drawn
    outlined: bool
    uncertain: bool        # the 95 % interval contains 0
    rank: int              # 1 = largest |φ| among drawn players; 0 for the context
    marked: bool           # numbered on the slices


def uncertain(phi, se) -> np.ndarray:
    """True where the 95 % interval φ ± 1.96·SE contains 0 (an exact φ of 0 included) or the
    SE is unknown (NaN, null in a result stopped inside its first design)."""
    phi, se = np.asarray(phi, float), np.asarray(se, float)
    return ~(np.abs(phi) > Z95 * se)


def resolved_count(phi, se, drawn=None, most: int = TOP_MARKED) -> int:
    """How many leading drawn players (by |φ|) are resolved drivers: the largest k ≤ ``most``
    such that each of the top k has a 95 % interval clear of 0 and the k-th's interval lies
    clear of the (k+1)-th's (|φ_k| − 1.96·SE_k > |φ_k+1| + 1.96·SE_k+1). The top k need not
    be ordered among themselves (equal drivers stay a resolved set); 0: none can be named."""
    phi, se = np.abs(np.asarray(phi, float)), np.asarray(se, float)
    drawn = np.ones(phi.shape, bool) if drawn is None else np.asarray(drawn, bool)
    order = [int(i) for i in np.argsort(-phi, kind="stable") if drawn[i]]
    lower = phi - Z95 * np.where(np.isnan(se), np.inf, se)
    upper = phi + Z95 * np.where(np.isnan(se), np.inf, se)
    best = 0
    for k in range(1, min(most, len(order)) + 1):
        if not lower[order[k - 1]] > 0:
            break
        nxt = upper[order[k]] if k < len(order) else 0.0
        if lower[order[k - 1]] > nxt:
            best = k
    return best


def resolution_text(phi, se, names, kinds=None) -> str:
    """One line on what can be named: the resolved drivers, or ``NOT_RESOLVED``."""
    drawn = None if kinds is None else [k != "context" for k in kinds]
    k = resolved_count(phi, se, drawn)
    if not k:
        return NOT_RESOLVED
    order = [int(i) for i in np.argsort(-np.abs(np.asarray(phi, float)), kind="stable")
             if drawn is None or drawn[i]][:k]
    return (f"resolved: the top {k} ({', '.join(str(names[i]) for i in order)}) stand clear of the rest"
            if k > 1 else f"resolved: {names[order[0]]} stands clear of the rest")


def coarse_players(rows: list[dict]) -> dict | None:
    """The first level's players of a coarse-to-fine result: per final player its coarse
    player's index, and per coarse player φ (the exact sum of its pieces), an SE (root sum of
    squares) and its kind. None if the rows do not say their coarse player."""
    if not rows or any("coarse" not in r for r in rows):
        return None
    names = list(dict.fromkeys(r["coarse"] for r in rows))
    index = np.array([names.index(r["coarse"]) for r in rows])
    phi = np.array([sum(r["phi"] for r in rows if r["coarse"] == n) for n in names])
    se = np.array([np.sqrt(sum(np.nan if r["se"] is None else r["se"] ** 2 for r in rows if r["coarse"] == n))
                   for n in names])
    kinds = ["context" if all(r["kind"] == "context" for r in rows if r["coarse"] == n) else "organ" for n in names]
    return {"names": names, "index": index, "phi": phi, "se": se, "kinds": kinds}


def resolution_lines(rows: list[dict]) -> list[str]:
    """What may be named as drivers: the final players', and where they are not resolved,
    the first (organ-level) answer's."""
    se = [float("nan") if r["se"] is None else r["se"] for r in rows]
    line = resolution_text([r["phi"] for r in rows], se, [r["name"] for r in rows], [r["kind"] for r in rows])
    coarse = coarse_players(rows) if line == NOT_RESOLVED else None
    if coarse is None:
        return [line]
    return [line, "first answer (organ level): " + resolution_text(coarse["phi"], coarse["se"], coarse["names"],
                                                                     coarse["kinds"])]


def color_scale(phi, drawn=None) -> float:
    """The colour scale's half-width: max |φ| over the drawn players (all if none given)."""
    phi = np.asarray(phi, float)
    drawn = np.ones(phi.shape, bool) if drawn is None else np.asarray(drawn, bool)
    return phi_scale(phi[drawn] if drawn.any() else phi)


def player_styles(phi, se=None, kinds=None, show_uncertain: bool = False) -> list[PlayerStyle]:
    """The style of every player (order as given)."""
    phi = np.asarray(phi, float)
    se = np.zeros_like(phi) if se is None else np.asarray(se, float)
    drawn = np.array([k != "context" for k in kinds]) if kinds is not None else np.ones(phi.shape, bool)
    vmax = color_scale(phi, drawn)
    rgb = phi_colors(phi, vmax)
    fill = phi_opacity(phi, vmax, *FILL)
    unsure = uncertain(phi, se)
    order = [int(i) for i in np.argsort(-np.abs(phi), kind="stable") if drawn[i]]
    rank = np.zeros(phi.size, int)
    rank[order] = np.arange(1, len(order) + 1)
    named = resolved_count(phi, se, drawn)
    styles = []
    for i in range(phi.size):
        marked = bool(drawn[i] and 0 < rank[i] <= named)
        if not drawn[i]:
            f = 0.0
        elif unsure[i] and not marked:
            f = UNCERTAIN_FILL if show_uncertain else 0.0
        else:
            f = float(fill[i])
        outlined = bool(drawn[i] and 0 < rank[i] <= TOP_OUTLINED and (marked or not unsure[i]))
        styles.append(PlayerStyle(tuple(float(c) for c in rgb[i]), f, outlined, bool(unsure[i]), int(rank[i]),
                                  marked))
    return styles


def outlines_in_view(ids2d: np.ndarray, styles: list[PlayerStyle],
                     max_share: float = MAX_OUTLINE_SHARE) -> tuple[list[int], np.ndarray]:
    """The outlined players (ids) of one view and their boundary pixels (label = id + 1),
    at most ``max_share`` of the view: the lowest-ranked outlines are dropped until it fits."""
    from skimage.segmentation import find_boundaries
    mask = np.zeros(ids2d.shape, bool)
    kept: list[int] = []
    for _rank, pid in sorted((s.rank, pid) for pid, s in enumerate(styles) if s.outlined):
        edge = find_boundaries(ids2d == pid + 1, mode="inner")
        if not edge.any():
            continue
        if (mask | edge).sum() > max_share * ids2d.size:
            break
        mask |= edge
        kept.append(pid)
    return kept, mask
