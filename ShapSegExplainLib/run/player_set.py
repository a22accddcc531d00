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
from .job import ExplainJob

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
    from ..nnunet.evaluator import plan_roi
    from ..players.maps import PlayerSettings, players_for_case, without_context

    job = run.job
    plan = plan_roi(case.model, case, roi)
    settings = PlayerSettings.of(job)
    if uses_levels(job):
        from ..players.levels import build_tree
        from ..players.maps import anatomy_for_case, support_mask
        anatomy = anatomy_for_case(case, plan, settings, job.anatomy, job.anatomy_labels, predictor)
        tree = build_tree(plan, case.spacing, anatomy, support_mask(plan, case.spacing, settings.margin_mm),
                          settings, job.levels, context=job.context_player)
        roots = players_of(case, plan, tree.player_map(tree.roots()), tree)
        roots.nodes = tree.roots()
        return roots
    pmap = players_for_case(case, plan, settings, job.anatomy, job.anatomy_labels, predictor)
    if not job.context_player:
        pmap = without_context(pmap)
    return players_of(case, plan, pmap)


def uses_levels(job: ExplainJob) -> bool:
    """Coarse-to-fine for the abstractions that nest (hybrid, fcc) when more than one level is asked."""
    from ..players.levels import LEVEL_KINDS
    return job.levels > 1 and job.players in LEVEL_KINDS


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
