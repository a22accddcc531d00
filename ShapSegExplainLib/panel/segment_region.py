"""A segment as the region, without Slicer: its pieces (islands) with their volumes, the
piece the user picks, why a segment cannot be a region, and which of the model's classes a
segment's name or terminology means.

The Slicer module exports the chosen segment onto the CT's grid (Slicer's export onto a
reference volume), and hands the voxels here; the picked piece is written as the job's
``--roi-mask``. Pieces use the same definition as the point region's "component under the
click" (``components.pieces``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

ALL = 0     # the island choice "all pieces"


@dataclass(frozen=True)
class Island:
    number: int               # 1 = the largest
    voxels: int
    ml: float


def islands(mask: np.ndarray, spacing_xyz) -> list[Island]:
    """The segment's pieces, largest first."""
    from ..components import pieces
    _labels, voxels = pieces(mask)
    ml = float(np.prod(spacing_xyz)) / 1000.0
    return [Island(k + 1, int(n), float(n) * ml) for k, n in enumerate(voxels)]


def island_choices(found: list[Island]) -> list[str]:
    """The island list's entries: index 0 = all pieces, index k = piece k."""
    total = sum(i.ml for i in found)
    first = f"All pieces ({len(found)}, {total:.3g} mL)" if len(found) != 1 else f"The whole segment ({total:.3g} mL)"
    return [first] + [f"Piece {i.number}: {i.ml:.3g} mL" for i in found] if len(found) > 1 else [first]


def pick(mask: np.ndarray, choice: int = ALL) -> np.ndarray:
    """The region: all of ``mask`` (``ALL``) or its ``choice``-th largest piece."""
    mask = np.asarray(mask, bool)
    if choice == ALL:
        return mask
    from ..components import pieces
    labels, voxels = pieces(mask)
    if not 1 <= choice <= len(voxels):
        from ..errors import ShapSegError
        raise ShapSegError(f"the segment has {len(voxels)} pieces; piece {choice} does not exist", "bad_region")
    return labels == choice


def region_problem(mask_on_ct: np.ndarray, segment_voxels: int) -> str | None:
    """Why the exported segment cannot be the region (one line), or None."""
    if segment_voxels == 0:
        return "The chosen segment is empty: paint it first."
    if not np.asarray(mask_on_ct).any():
        return "The chosen segment lies outside the CT."
    return None


# ----- segment name or terminology -> the model's class -----------------------------------------------
_SKIP = {"of", "the", "and", "structure", "segment", "truth", "ai", "prediction", "predicted"}


def _words(text: str) -> frozenset[str]:
    """Lower-case words of a name (``kidney_left``, ``Left kidney``, ``kidney (left)`` agree);
    digits stay attached (``L1 vertebra`` = ``vertebrae_L1``: Latin plurals in -ae drop the e)."""
    words = (w for w in re.split(r"[^0-9a-z]+", text.lower()) if w and w not in _SKIP)
    return frozenset(w[:-1] if w.endswith("ae") and len(w) > 3 else w for w in words)


def terminology_words(entry: str | None) -> str:
    """The type and modifier meanings of a Slicer terminology entry string
    (``category~SCT^code^Meaning~...``: fields 2 = type, 3 = type modifier, separated by ``~``,
    each ``scheme^code^meaning``) — e.g. ``Kidney Left`` for the left kidney."""
    if not entry:
        return ""
    fields = entry.split("~")
    words = []
    for f in fields[2:4]:
        parts = f.split("^")
        if len(parts) >= 3 and parts[2]:
            words.append(parts[2])
    return " ".join(words)


def target_for_segment(name: str, terminology: str | None, classes: list[str]) -> str | None:
    """The model class the segment is, by its words (name first, then its terminology), when
    exactly one class has the same words; None when nothing (or more than one) matches."""
    for text in (name, terminology_words(terminology)):
        words = _words(text)
        if not words:
            continue
        hits = [c for c in classes if _words(c) == words]
        if len(hits) == 1:
            return hits[0]
    return None
