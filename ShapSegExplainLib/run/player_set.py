"""The players of a run: built from the job (flat map, or the coarse-to-fine tree's roots),
summarised row by row, and shown before sampling starts (the ``players`` event and the
preview map the live overlay colours)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from ..errors import ShapSegError

if TYPE_CHECKING:       # types only: the heavy modules are imported when a run needs them
    from ..nnunet.grid import RoiPlan
    from ..players.levels import PlayerTree
    from ..players.maps import PlayerMap
    from .state import Run


@dataclass
class PlayerSet:
    """The players of a run: the ROI plan they live in, the map, a row per player, the map's
    summary; for a coarse-to-fine run also the tree and the nodes that are the players (the
    roots until the values are known, the final players after; the evaluator plays the atoms)."""
    plan: RoiPlan
    pmap: PlayerMap
    rows: list[dict]
    summary: dict
    tree: PlayerTree | None = None
    nodes: list[int] | None = None      # coarse to fine: the tree nodes the players are


def build_players_for(run: Run, case, roi: np.ndarray, predictor) -> PlayerSet:
    """The job's players (``players.levels.players_for_run``): a flat map, or the tree whose
    roots play first."""
    from ..nnunet.evaluator import plan_roi
    from ..players.levels import PlayerTree, players_for_run
    from ..players.maps import PlayerSettings

    job = run.job
    plan = plan_roi(case.model, case, roi)
    built = players_for_run(case, plan, PlayerSettings.of(job), job.anatomy, job.anatomy_labels, predictor,
                            job.levels, job.context_player)
    if not isinstance(built, PlayerTree):
        return players_of(case, plan, built)
    roots = players_of(case, plan, built.player_map(built.roots()), built)
    roots.nodes = built.roots()
    return roots


def players_of(case, plan, pmap, tree=None) -> PlayerSet:
    """Rows and summary of a player map."""
    from ..players.stats import map_summary, player_table
    rows = player_table(pmap, plan, case.spacing, case.network_to_ras)
    return PlayerSet(plan, pmap, rows, map_summary(pmap, plan, case.spacing, rows), tree)


def player_ids_ct(case, plan, pmap) -> np.ndarray:
    """Player id + 1 per CT voxel (0 outside the crop), through nnU-Net's export path."""
    return case.labels_to_ct(plan.crop_to_image((pmap.ids + 1).astype(np.int32), 0))


def write_preview(path: str, case, plan, pmap) -> str:
    """The player map (label = id + 1) in the CT's geometry, written atomically before the
    sampling starts, so that a GUI can colour the players while φ is still converging."""
    ids_ct = player_ids_ct(case, plan, pmap)
    image = sitk.GetImageFromArray(ids_ct.astype(np.uint16 if pmap.n_players >= 255 else np.uint8))
    image.CopyInformation(case.ct)
    path = Path(path)
    tmp = path.with_name(f".partial-{path.name}")   # same extension, so SimpleITK picks the format
    try:
        sitk.WriteImage(image, str(tmp), True)
        tmp.replace(path)
    except (OSError, RuntimeError) as e:
        raise ShapSegError(f"cannot write the player preview {path}: {e}", "bad_output") from None
    return str(path)


def emit_players(run: Run, case, players: PlayerSet, vf) -> None:
    """The ``players`` event (and the preview map the live overlay colours)."""
    job = run.job
    preview = write_preview(job.preview, case, players.plan, players.pmap) if job.preview else None
    run.emit({"event": "players", "unit": vf.unit, "value": job.value, "normalized": job.normalized,
              "preview": preview,
              "players": [{k: r[k] for k in ("id", "name", "kind", "organ", "voxels", "ml", "centroid_ras")}
                          for r in players.rows]})
