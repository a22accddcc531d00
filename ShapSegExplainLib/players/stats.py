"""Summaries of a player map: per player (size, centroid, organ, anatomical purity) and per
map (count, mean size, mean purity, players per ROI tile, which drives the memo hit rate)."""
from __future__ import annotations

import numpy as np

from ..nnunet.grid import RoiPlan
from .fragments import piece_stats
from .maps import PlayerMap


def player_table(pmap: PlayerMap, plan: RoiPlan, spacing, to_ras=None) -> list[dict]:
    """One row per player; purity is the share of a player's voxels in its majority organ
    of the (cleaned) anatomy map. ``to_ras`` maps network-image positions (n, 3) to RAS mm
    (``Case.network_to_ras``); without it centroids are network voxel indices."""
    n = pmap.n_players
    ids = pmap.ids
    count, centroid, joint = piece_stats(ids, pmap.anatomy.codes, n)
    purity, majority = joint.max(axis=1) / np.maximum(count, 1), joint.argmax(axis=1)
    offset = np.array([s.start for s in plan.crop]) - np.array(plan.grid.pad_lo)
    centroid_net = centroid + offset
    ras = to_ras(centroid_net) if to_ras is not None else None
    roi_vox = np.bincount(ids[(ids >= 0) & plan.roi_in_crop].astype(np.int64), minlength=n)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    rows = []
    for p in pmap.players:
        context = p.kind == "context"
        rows.append({
            "id": p.id, "name": p.name, "kind": p.kind, "organ": p.organ,
            "voxels": int(count[p.id]), "ml": round(float(count[p.id]) * voxel_ml, 4),
            "centroid_network": [round(float(v), 2) for v in centroid_net[p.id]],
            "centroid_ras": None if ras is None else [round(float(v), 2) for v in ras[p.id]],
            "majority_organ": None if context else pmap.anatomy.name(int(majority[p.id])),
            "purity": None if context else round(float(purity[p.id]), 6),
            "roi_voxels": int(roi_vox[p.id]),
        })
    return rows


def players_per_tile(pmap: PlayerMap, plan: RoiPlan) -> list[int]:
    """How many players (context included) each ROI tile sees; a tile's memo key has that many bits."""
    off = [s.start for s in plan.crop]
    out = []
    for t in plan.tiles:
        local = tuple(slice(s.start - o, s.stop - o) for s, o in zip(plan.grid.windows[t], off))
        sub = pmap.ids[local]
        out.append(int(np.unique(sub[sub >= 0]).size))
    return out


def map_summary(pmap: PlayerMap, plan: RoiPlan, spacing, rows: list[dict] | None = None) -> dict:
    """Totals for a map; sizes and purity are means over the support players (context excluded)."""
    rows = rows if rows is not None else player_table(pmap, plan, spacing)
    fine = [r for r in rows if r["kind"] != "context"]
    ml = np.array([r["ml"] for r in fine]) if fine else np.zeros(1)
    ppt = players_per_tile(pmap, plan)
    context = [r for r in rows if r["kind"] == "context"]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {
        "abstraction": pmap.settings.abstraction,
        "players": pmap.n_players,
        "support_players": len(fine),
        "support_ml": round(float(pmap.support.sum()) * voxel_ml, 2),
        "context_ml": round(context[0]["ml"], 2) if context else 0.0,
        "mean_ml": round(float(ml.mean()), 3), "min_ml": round(float(ml.min()), 3),
        "max_ml": round(float(ml.max()), 3),
        "mean_purity": round(float(np.mean([r["purity"] for r in fine])), 6) if fine else None,
        "tiles": len(plan.tiles), "players_per_tile": ppt,
        "mean_players_per_tile": round(float(np.mean(ppt)), 2), "max_players_per_tile": int(max(ppt)),
        "anatomy_source": pmap.anatomy.source, "anatomy_reassigned_voxels": pmap.anatomy.reassigned_voxels,
    }
