"""Nested players for coarse-to-fine explanations: a tree whose every level refines the last.

Level 1 is the organ units of the support (``hybrid``) or FCC cells at the coarsest spacing
(``fcc``); level k+1 cuts each level-k player by the FCC cells of half the spacing, into
connected pieces, pieces below a quarter of a cell merged into a neighbour *of the same
parent*, so the levels nest by construction. The finest level uses the job's spacing
(``--levels 4`` with 15 mm: organ units, 60, 30 and 15 mm cells). A player that a level does
not split stays one node. The finest pieces are the *atoms*: the evaluator's players, so
one tile memo serves every level. The context player (the rest of the crop) is a root
that is never split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..nnunet.grid import RoiPlan
from .anatomy import Anatomy
from .fragments import connected_pieces, merge_small, piece_stats
from .lattice import encode_cells, fcc_cell_volume_mm3, fcc_cells
from .maps import (CONTEXT_NAME, Player, PlayerMap, PlayerSettings, anatomy_for_case, piece_values, players_for_case,
                   roi_centre, support_mask)

LEVEL_KINDS = ("hybrid", "fcc")


@dataclass
class Tree:
    """Nested groups of atoms: per node its atoms and its parent (-1 for a root)."""
    node_atoms: list[np.ndarray]
    parent: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.node_atoms)

    @property
    def n_atoms(self) -> int:
        return int(max((a.max() for a in self.node_atoms if a.size), default=-1)) + 1

    def roots(self) -> list[int]:
        return [int(n) for n in np.flatnonzero(self.parent < 0)]

    def root(self, node: int) -> int:
        while self.parent[node] >= 0:
            node = int(self.parent[node])
        return int(node)

    def children(self, node: int) -> list[int]:
        return [int(n) for n in np.flatnonzero(self.parent == node)]

    def membership(self, nodes: list[int]) -> np.ndarray:
        """(len(nodes), n_atoms) bool: which atoms make up each node."""
        out = np.zeros((len(nodes), self.n_atoms), bool)
        for row, n in enumerate(nodes):
            out[row, self.node_atoms[n]] = True
        return out


@dataclass
class PlayerTree(Tree):
    """The tree of a case: nodes of every level over the atoms (the finest pieces, context last)."""
    atoms: PlayerMap
    level: np.ndarray                 # per node, 1 = the coarse game
    names: list[str]
    organs: list[str | None]
    spacings_mm: list[float | None]   # per level: FCC spacing (None: organ units)

    def player_map(self, nodes: list[int]) -> PlayerMap:
        """The flat map whose players are ``nodes`` (a partition of the atoms), in that order."""
        lut = np.full(self.atoms.n_players, -1, np.int64)
        for i, n in enumerate(nodes):
            lut[self.node_atoms[n]] = i
        a = self.atoms
        ids = np.where(a.ids >= 0, lut[np.maximum(a.ids, 0)], -1).astype(np.int32)
        players = [Player(id=i, name=self.names[n], kind=self.kind(n), organ=self.organs[n])
                   for i, n in enumerate(nodes)]
        return PlayerMap(ids=ids, players=players, support=a.support, anatomy=a.anatomy, settings=a.settings,
                         roi_centre=a.roi_centre, info={**a.info, "levels": len(self.spacings_mm)})

    def node_voxels(self) -> np.ndarray:
        """Per node, its voxels (the volume that refinement weighs |φ| by)."""
        ids = self.atoms.ids
        per_atom = np.bincount(ids[ids >= 0], minlength=self.n_atoms)
        return np.array([per_atom[a].sum() for a in self.node_atoms], np.int64)

    def kind(self, node: int) -> str:
        if self.organs[node] is None and self.names[node] == CONTEXT_NAME:
            return "context"
        return "organ" if self.spacings_mm[self.level[node] - 1] is None else self.atoms.settings.abstraction


def level_spacings(settings: PlayerSettings, levels: int) -> list[float | None]:
    """FCC spacing per level, finest = the settings' spacing, each coarser level twice the
    next; level 1 of ``hybrid`` is the organ units (None)."""
    fine = settings.spacing_mm
    out: list[float | None] = [fine * 2 ** (levels - k) for k in range(1, levels + 1)]
    if settings.abstraction == "hybrid":
        out[0] = None
    return out


def players_for_run(case, plan: RoiPlan, settings: PlayerSettings, anatomy_source=None, names_file=None,
                    predictor=None, levels: int = 1, context: bool = True) -> PlayerMap | PlayerTree:
    """A run's players, one entry for both shapes: the coarse-to-fine tree where the kind nests
    (``LEVEL_KINDS``) and more than one level is asked, else the flat map. The context player
    (``context``: the rest of the crop is a player, or stays as it is) is decided by the builder,
    the same way for both."""
    anatomy = anatomy_for_case(case, plan, settings, anatomy_source, names_file, predictor)
    if levels > 1 and settings.abstraction in LEVEL_KINDS:
        support = support_mask(plan, case.spacing, settings.margin_mm)
        return build_tree(plan, case.spacing, anatomy, support, settings, levels, context=context)
    return players_for_case(case, plan, settings, anatomy=anatomy, context=context)


def build_tree(plan: RoiPlan, spacing, anatomy: Anatomy, support: np.ndarray, settings: PlayerSettings,
               levels: int, context: bool = True) -> PlayerTree:
    """The nested levels over the support, then nodes, atoms and names; ``context``: the
    rest of the crop is a player (else it stays as it is in every coalition, id -1)."""
    if settings.abstraction not in LEVEL_KINDS:
        raise ValueError(f"levels need {' or '.join(LEVEL_KINDS)} players")
    spacing = np.asarray(spacing, float)
    centre = roi_centre(plan)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    codes = anatomy.codes
    maps = []
    prev = None
    for d in level_spacings(settings, levels):
        if d is None:
            pieces = np.where(support, codes + 1, 0).astype(np.int64)
        else:
            cells = encode_cells(fcc_cells(plan.crop_shape, spacing, centre, d))
            keys = cells if prev is None else cells * (int(prev.max()) + 1) + prev
            pieces = connected_pieces(keys, support)
            group = None if prev is None else piece_values(pieces, prev)
            min_vox = int(np.ceil(0.25 * fcc_cell_volume_mm3(d) / 1000.0 / voxel_ml))
            pieces = merge_small(pieces, min_vox, group)
        maps.append(pieces)
        prev = pieces
    return _tree_from_levels(plan, maps, anatomy, settings, centre, spacing, level_spacings(settings, levels),
                             context)


def _tree_from_levels(plan, maps, anatomy, settings, centre, spacing, spacings, with_context) -> PlayerTree:
    """Nodes level by level (a piece that is its parent's only piece is the parent itself);
    siblings ordered by distance of their centroid to the ROI centre; names ``organ``,
    ``organ.2``, ``organ.2.1``."""
    codes = anatomy.codes
    support = maps[0] > 0
    node_of: list[dict[int, int]] = []          # per level: piece label -> node
    parent, level, names, organs = [], [], [], []
    for k, pieces in enumerate(maps):
        labels = np.unique(pieces[support])
        n = int(pieces.max()) + 1
        count, centroid, joint = piece_stats(np.where(support, pieces, -1), codes, n)
        dist = np.linalg.norm((centroid - np.asarray(centre)) * spacing, axis=1)
        up = None if k == 0 else piece_values(pieces, maps[k - 1])
        by_parent: dict[int, list[int]] = {}
        for lab in labels:
            by_parent.setdefault(-1 if up is None else int(node_of[k - 1][int(up[lab])]), []).append(int(lab))
        mapping: dict[int, int] = {}
        for par, labs in sorted(by_parent.items()):
            if par >= 0 and len(labs) == 1:
                mapping[labs[0]] = par
                continue
            labs.sort(key=lambda lab: (int(joint[lab].argmax()) if par < 0 else 0, round(float(dist[lab]), 6), lab))
            for i, lab in enumerate(labs, 1):
                organ = anatomy.name(int(joint[lab].argmax()))
                mapping[lab] = len(parent)
                parent.append(par)
                level.append(k + 1)
                organs.append(organ)
                if par < 0:
                    names.append(organ if spacings[0] is None else f"cell {i}")
                else:
                    names.append(f"{names[par]}.{i}")
        node_of.append(mapping)
    fine = maps[-1]
    atom_labels = [lab for lab in np.unique(fine[support])]
    atom_node = [node_of[-1][int(lab)] for lab in atom_labels]
    # atoms ordered by their deepest node, so a node's atoms are contiguous in the map
    order = np.argsort(atom_node, kind="stable")
    lut = np.full(int(fine.max()) + 1, -1, np.int64)
    lut[np.asarray(atom_labels)[order]] = np.arange(len(atom_labels))
    ids = np.where(support, lut[fine], -1).astype(np.int32)
    node_atoms_sets: list[list[int]] = [[] for _ in parent]
    for atom, node in enumerate(np.asarray(atom_node)[order]):
        while node >= 0:
            node_atoms_sets[node].append(atom)
            node = parent[node]
    atoms_players = [Player(id=i, name=f"atom {i + 1}", kind=settings.abstraction, organ=None)
                     for i in range(len(atom_labels))]
    context = plan.image_in_crop & ~support
    if with_context and context.any():
        ids[context] = len(atoms_players)
        atoms_players.append(Player(id=len(atoms_players), name=CONTEXT_NAME, kind="context", organ=None))
        node_atoms_sets.append([len(atoms_players) - 1])
        parent.append(-1)
        level.append(1)
        names.append(CONTEXT_NAME)
        organs.append(None)
    atoms = PlayerMap(ids=ids, players=atoms_players, support=support, anatomy=anatomy, settings=settings,
                      roi_centre=centre, info={"support_voxels": int(support.sum()), "anatomy_source": anatomy.source,
                                               "anatomy_reassigned_voxels": anatomy.reassigned_voxels})
    return PlayerTree(atoms=atoms, node_atoms=[np.array(s, np.int64) for s in node_atoms_sets],
                      parent=np.array(parent, np.int64), level=np.array(level, np.int64), names=names,
                      organs=organs, spacings_mm=list(spacings))
