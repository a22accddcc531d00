"""Players: a partition of the crop into named groups of voxels on the network grid.

Fine players live in the ROI's *support* (the ROI dilated by ``margin_mm``); the rest of
the crop is one *context* player, so "every player absent" still blanks the whole crop.
nnU-Net's padding outside the image is not a player (-1; it is not patient data).

Abstractions inside the support:

* ``organ``  one player per organ of the anatomy map (pieces of an organ stay one player);
* ``fcc``    Voronoi cells of an FCC lattice of spacing D anchored at the ROI centre, cut
  into connected pieces, pieces below the minimum size merged into the neighbour they
  touch most;
* ``hybrid`` FCC cells intersected with the anatomy map; every player is one connected
  piece of one organ; small pieces join the same-organ neighbour they touch most;
* ``slic``   3D SLIC supervoxels (scikit-image) on the crop's intensities, optionally cut
  along the anatomy map like ``hybrid``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage

from .. import choices
from ..errors import ShapSegError
from ..nnunet.grid import RoiPlan
from .anatomy import Anatomy, build_anatomy
from .fragments import connected_pieces, merge_small, piece_stats
from .lattice import encode_cells, fcc_cell_volume_mm3, fcc_cells

CONTEXT_NAME = "context (rest of crop)"


@dataclass(frozen=True)
class PlayerSettings:
    """How the support is split into players. Sizes in mm / mL on the network grid."""
    abstraction: str = "hybrid"
    spacing_mm: float = 15.0
    margin_mm: float = 20.0
    min_size_ml: float | None = None
    speck_ml: float = 0.1
    slic_compactness: float = 0.1
    slic_segments: int | None = None
    slic_anatomy: bool = True

    @classmethod
    def of(cls, source, abstraction: str | None = None) -> "PlayerSettings":
        """The settings a job (or parsed ``shapseg`` options) describes; its ``players`` field is
        the abstraction, every other field has the same name here."""
        names = [f for f in cls.__dataclass_fields__ if f != "abstraction"]
        return cls(abstraction=abstraction or source.players, **{f: getattr(source, f) for f in names}).check()

    def check(self) -> "PlayerSettings":
        if self.abstraction not in PLAYER_KINDS:
            raise ShapSegError(f"unknown players '{self.abstraction}' (use {', '.join(PLAYER_KINDS)})", "bad_option")
        for name in ("spacing_mm", "slic_compactness"):
            if not getattr(self, name) > 0:
                raise ShapSegError(f"{name.replace('_', '-')} must be positive", "bad_option")
        for name in ("margin_mm", "speck_ml"):
            if not getattr(self, name) >= 0:
                raise ShapSegError(f"{name.replace('_', '-')} must be zero or positive", "bad_option")
        if self.min_size_ml is not None and not self.min_size_ml >= 0:
            raise ShapSegError("min-size-ml must be zero or positive", "bad_option")
        if self.slic_segments is not None and self.slic_segments < 1:
            raise ShapSegError("slic-segments must be at least 1", "bad_option")
        return self

    @property
    def cell_ml(self) -> float:
        return fcc_cell_volume_mm3(self.spacing_mm) / 1000.0

    @property
    def min_ml(self) -> float:
        """Pieces below this join a neighbour; default a quarter of an FCC cell."""
        return self.min_size_ml if self.min_size_ml is not None else 0.25 * self.cell_ml


@dataclass(frozen=True)
class Player:
    id: int
    name: str
    kind: str
    organ: str | None


@dataclass
class PlayerMap:
    """Player id per crop voxel (-1 only on nnU-Net's padding) and the players, context last."""
    ids: np.ndarray
    players: list[Player]
    support: np.ndarray
    anatomy: Anatomy
    settings: PlayerSettings
    roi_centre: tuple[float, float, float]
    info: dict = field(default_factory=dict)

    @property
    def n_players(self) -> int:
        return len(self.players)

    def describe(self) -> list[dict]:
        return [asdict(p) for p in self.players]


def support_mask(plan: RoiPlan, spacing, margin_mm: float) -> np.ndarray:
    """Crop voxels of the image within ``margin_mm`` (Euclidean, physical) of the ROI."""
    roi = plan.roi_in_crop
    if margin_mm <= 0:
        return roi & plan.image_in_crop
    dist = ndimage.distance_transform_edt(~roi, sampling=np.asarray(spacing, float))
    return (dist <= margin_mm) & plan.image_in_crop


def roi_centre(plan: RoiPlan) -> tuple[float, float, float]:
    """The ROI's centroid in crop voxel coordinates."""
    return tuple(float(c) for c in np.argwhere(plan.roi_in_crop).mean(axis=0))


@dataclass(frozen=True)
class Crop:
    """What a kind of player cuts: the crop's geometry, the anatomy and the support around the ROI."""
    plan: RoiPlan
    spacing: np.ndarray                 # mm, (z, y, x)
    anatomy: Anatomy
    support: np.ndarray                 # bool over the crop
    settings: PlayerSettings
    centre: tuple[float, float, float]  # the ROI's centroid, crop voxels
    intensities: np.ndarray | None      # the crop's normalised image (kinds with ``intensities``)


@dataclass(frozen=True)
class PlayerKind:
    """A way to cut the support into players. ``cells(crop)`` labels the crop's voxels (any
    integers); every player is then one connected piece of one cell, of one organ too when
    ``by_organ(settings)``, with pieces below the minimum size merged into a neighbour (of the
    same organ). ``label`` names the players (``cell 7``); without one they are named by organ.
    ``whole_organs``: one player per organ, its pieces together (``organ``; ``cells`` unused)."""
    name: str
    cells: Callable[[Crop], np.ndarray] | None
    by_organ: Callable[[PlayerSettings], bool] = lambda settings: True
    label: str = ""
    intensities: bool = False
    whole_organs: bool = False


PLAYER_KINDS: dict[str, PlayerKind] = {}


def register_player_kind(kind: PlayerKind) -> PlayerKind:
    """Add a kind of player: jobs, ``shapseg explain --players`` (parsed after this) and the API
    accept its name from now on (docs/extending.md). It plays flat (coarse to fine: ``levels``)."""
    PLAYER_KINDS[kind.name] = kind
    choices.add("players", kind.name)
    return kind


def fcc_cell_codes(crop: Crop) -> np.ndarray:
    return encode_cells(fcc_cells(crop.plan.crop_shape, crop.spacing, crop.centre, crop.settings.spacing_mm))


def slic_cells(crop: Crop) -> np.ndarray:
    return slic_regions(crop.intensities, crop.support, crop.spacing, crop.settings)


for _kind in (PlayerKind("organ", None, whole_organs=True),
              PlayerKind("fcc", fcc_cell_codes, by_organ=lambda s: False, label="cell"),
              PlayerKind("hybrid", fcc_cell_codes),
              PlayerKind("slic", slic_cells, by_organ=lambda s: s.slic_anatomy, label="region", intensities=True)):
    register_player_kind(_kind)


def build_players(plan: RoiPlan, spacing, anatomy: Anatomy, support: np.ndarray,
                  settings: PlayerSettings = PlayerSettings(), intensities: np.ndarray | None = None,
                  context: bool = True) -> PlayerMap:
    """The player map of one abstraction over the crop (``intensities``: crop image for SLIC);
    ``context``: the rest of the crop is one player (else it stays as it is in every coalition,
    id -1, and only the support's players are explained)."""
    settings.check()
    spacing = np.asarray(spacing, float)
    centre = roi_centre(plan)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    min_vox = int(np.ceil(settings.min_ml / voxel_ml))
    codes = anatomy.codes
    kind = PLAYER_KINDS[settings.abstraction]
    if kind.intensities and intensities is None:
        raise ShapSegError(f"{kind.name} players need the crop's intensities", "bad_option")
    if kind.whole_organs:
        pieces = np.where(support, codes + 1, 0).astype(np.int64)
        by_organ = True
    else:
        base = kind.cells(Crop(plan, spacing, anatomy, support, settings, centre, intensities))
        by_organ = kind.by_organ(settings)
        keys = base * (len(anatomy.names) + 1) + codes if by_organ else base
        pieces = connected_pieces(keys, support)
        group = piece_values(pieces, codes) if by_organ else None
        pieces = merge_small(pieces, min_vox, group)
    ids, players = _order_and_name(pieces, codes, anatomy, plan, spacing, centre, kind, by_organ, context)
    info = {"min_piece_voxels": min_vox, "support_voxels": int(support.sum()),
            "anatomy_source": anatomy.source, "anatomy_reassigned_voxels": anatomy.reassigned_voxels}
    if not context:
        info["context"] = "fixed"
    return PlayerMap(ids=ids, players=players, support=support, anatomy=anatomy, settings=settings,
                     roi_centre=centre, info=info)


def slic_regions(intensities: np.ndarray, support: np.ndarray, spacing, settings: PlayerSettings) -> np.ndarray:
    """SLIC supervoxels of the support (labels >= 1), about one FCC cell in size by default."""
    from skimage.segmentation import slic
    vals = intensities[support]
    lo, hi = np.percentile(vals, [1, 99]) if vals.size else (0.0, 1.0)
    image = np.clip(intensities, lo, hi).astype(np.float64)
    n = settings.slic_segments or max(1, int(round(support.sum() * np.prod(spacing) / 1000.0 / settings.cell_ml)))
    return slic(image, n_segments=n, compactness=settings.slic_compactness, spacing=np.asarray(spacing, float),
                mask=support, channel_axis=None, start_label=1, enforce_connectivity=True).astype(np.int64)


def piece_values(pieces: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The value of ``values`` on each piece (pieces are constant in it), indexed by piece id."""
    out = np.full(int(pieces.max()) + 1, -1, np.int64)
    inside = pieces > 0
    out[pieces[inside]] = values[inside]
    return out


def _order_and_name(pieces, codes, anatomy, plan, spacing, centre, kind, by_organ, with_context):
    """Stable ids: support players by (organ, distance of centroid to the ROI centre, first
    voxel), organ units by organ; the context player last. Names say what a player is."""
    inside = pieces > 0
    flat = pieces.reshape(-1)
    n = int(pieces.max()) + 1
    count, centroid, joint = piece_stats(np.where(inside, pieces, -1), codes, n)
    dist = np.round(np.linalg.norm((centroid - np.asarray(centre)) * spacing, axis=1), 6)
    first = np.full(n, flat.size, np.int64)
    np.minimum.at(first, flat, np.arange(flat.size))
    majority = joint.argmax(axis=1)   # lowest code on ties
    alive = [p for p in range(1, n) if count[p] > 0]
    if kind.whole_organs:
        alive.sort(key=lambda p: majority[p])
    else:
        alive.sort(key=lambda p: (majority[p] if by_organ else 0, dist[p], first[p]))
    lut = np.full(n, -1, np.int64)
    lut[alive] = np.arange(len(alive))
    ids = np.where(inside, lut[pieces], -1).astype(np.int32)
    players = _names(alive, majority, anatomy, kind, by_organ)
    context = plan.image_in_crop & ~inside
    if with_context and context.any():
        ids[context] = len(players)
        players.append(Player(id=len(players), name=CONTEXT_NAME, kind="context", organ=None))
    return ids, players


def _names(alive, majority, anatomy, kind, by_organ) -> list[Player]:
    players = []
    per_organ: dict[int, int] = {}
    total = {c: sum(1 for p in alive if majority[p] == c) for c in set(int(majority[p]) for p in alive)}
    label = kind.label
    for new_id, p in enumerate(alive):
        organ = anatomy.name(int(majority[p]))
        if kind.whole_organs:
            name = organ
        elif by_organ:
            per_organ[majority[p]] = per_organ.get(majority[p], 0) + 1
            sep = f" {label} " if label else " "
            name = organ if total[int(majority[p])] == 1 and not label else f"{organ}{sep}{per_organ[majority[p]]}"
        else:
            name = f"{label} {new_id + 1}"
        players.append(Player(id=new_id, name=name, kind=kind.name, organ=organ))
    return players


def players_for_case(case, plan: RoiPlan, settings: PlayerSettings, anatomy_source=None, names_file=None,
                     predictor=None, anatomy: Anatomy | None = None, context: bool = True) -> PlayerMap:
    """Support, anatomy (the model's prediction or a label map file) and players for a prepared
    case. Pass ``anatomy`` (from ``anatomy_for_case``) to reuse it across abstractions."""
    settings.check()
    support = support_mask(plan, case.spacing, settings.margin_mm)
    if anatomy is None:
        anatomy = anatomy_for_case(case, plan, settings, anatomy_source, names_file, predictor)
    intensities = None
    if PLAYER_KINDS[settings.abstraction].intensities:
        from ..nnunet.tiles import pad_data
        intensities = pad_data(case.model, case.data)[0][plan.crop].numpy()
    return build_players(plan, case.spacing, anatomy, support, settings, intensities, context)


def anatomy_for_case(case, plan: RoiPlan, settings: PlayerSettings, anatomy_source=None, names_file=None,
                     predictor=None) -> Anatomy:
    """The cleaned anatomy map on the support that ``settings`` (margin, speck size) define."""
    support = support_mask(plan, case.spacing, settings.margin_mm)
    return build_anatomy(case, plan, support, anatomy_source, names_file, settings.speck_ml, predictor)
