"""What the report is drawn from: the output folder's own files, so that ``shapseg report
OUT`` re-draws a finished result (identically, or with other options) without the run.

``ct_view.nrrd`` is the CT cut to the region the report can show (the players and the ROI
plus ``VIEW_MARGIN_MM``), so a result stays drawable after the CT it came from is gone
(the Slicer module deletes its temporary copy). Everything is reoriented to LPS
(z, y, x) for radiological display.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ShapSegError

CT_VIEW = "ct_view.nrrd"
VIEW_MARGIN_MM = 50.0       # ≥ the view's own margin (15 mm) and half its minimum width (45 mm)


@dataclass
class ReportInputs:
    expl: dict                 # explanation.json
    hu: np.ndarray             # CT (HU), LPS (z, y, x)
    ids: np.ndarray            # player id + 1 per voxel, 0 outside every player
    roi: np.ndarray            # bool
    spacing: np.ndarray        # mm, (z, y, x)

    @property
    def rows(self) -> list[dict]:
        return self.expl["players"]

    @property
    def context_label(self) -> int | None:
        return next((r["id"] + 1 for r in self.rows if r["kind"] == "context"), None)


def view_region(ids_ct: np.ndarray, roi_ct: np.ndarray, context_label: int | None,
                spacing_xyz) -> tuple[slice, slice, slice]:
    """The CT index box (z, y, x) around the drawn players and the ROI, with the margin."""
    fine = (ids_ct > 0) & (ids_ct != (context_label if context_label is not None else -1))
    pts = np.argwhere(fine | (roi_ct > 0))
    if not len(pts):
        return tuple(slice(0, n) for n in ids_ct.shape)
    margin = np.ceil(VIEW_MARGIN_MM / np.asarray(spacing_xyz, float)[::-1]).astype(int)
    lo = np.maximum(pts.min(0) - margin, 0)
    hi = np.minimum(pts.max(0) + 1 + margin, ids_ct.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def write_ct_view(path: Path, ct: sitk.Image, ids_ct: np.ndarray, roi_ct: np.ndarray,
                  context_label: int | None) -> None:
    """The CT cut to the report's region, in the CT's own geometry (compressed NRRD)."""
    z, y, x = view_region(ids_ct, roi_ct, context_label, ct.GetSpacing())
    write_image(ct[x, y, z], path)


def write_image(image: sitk.Image, path: Path) -> None:
    """``sitk.WriteImage`` (compressed) with its failure as the ``OSError`` it is (a full disk,
    a folder gone), so a run reports one line instead of SimpleITK's RuntimeError."""
    try:
        sitk.WriteImage(image, str(path), True)
    except RuntimeError as e:
        raise OSError(f"{Path(path).name}: {str(e).strip().splitlines()[-1]}") from e


def read_inputs(folder: str | Path, ct: str | Path | None = None) -> ReportInputs:
    """A finished result's report inputs; ``ct`` replaces the CT view (or an older result's
    missing one). Bad or missing files are one clear ``ShapSegError``."""
    folder = Path(folder)
    expl = read_result(folder)
    image = _read_ct(folder, expl, ct)
    labels = _on_grid(_segmentation(folder / expl.get("files", {}).get("players", "players.seg.nrrd")), image)
    roi_seg = _segmentation(folder / expl.get("files", {}).get("roi", "roi.seg.nrrd"))
    roi = _on_grid(roi_seg, image, "roi")
    return ReportInputs(expl=expl, hu=to_lps(sitk.GetArrayFromImage(image).astype(np.float32), image),
                        ids=to_lps(labels.astype(np.int32), image), roi=to_lps(roi.astype(np.uint8), image) > 0,
                        spacing=np.asarray(sitk.DICOMOrient(image, "LPS").GetSpacing(), float)[::-1])


def read_result(folder: str | Path) -> dict:
    """``explanation.json`` of a result folder, or one line saying why it is not one."""
    folder = Path(folder)
    path = folder / "explanation.json"
    if not path.is_file():
        raise ShapSegError(f"{folder} is not a ShapSegExplain result (no explanation.json)", "bad_result")
    try:
        expl = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ShapSegError(f"{path} is not valid JSON: {e}", "bad_result") from None
    if not isinstance(expl, dict) or not isinstance(expl.get("players"), list):
        raise ShapSegError(f"{path} has no players; not a ShapSegExplain result", "bad_result")
    return expl


def _read_ct(folder: Path, expl: dict, ct: str | Path | None) -> sitk.Image:
    from ..nnunet.case import read_ct
    if ct is not None:
        return read_ct(ct)
    if (folder / CT_VIEW).is_file():
        try:
            return sitk.ReadImage(str(folder / CT_VIEW))
        except RuntimeError as e:
            raise ShapSegError(f"cannot read {folder / CT_VIEW}: {str(e).strip().splitlines()[-1]}",
                               "bad_result") from None
    source = (expl.get("settings") or {}).get("ct")
    if source and Path(source).exists():
        return read_ct(source)
    raise ShapSegError(f"{folder} has no {CT_VIEW} (an older result) and its CT {source} is gone; give it with --ct",
                       "bad_result")


def _segmentation(path: Path) -> dict:
    import slicerio
    if not path.is_file():
        raise ShapSegError(f"{path} is missing; the result is incomplete", "bad_result")
    try:
        return slicerio.read_segmentation(str(path))
    except Exception as e:                      # slicerio/pynrrd raise many types for a damaged file
        raise ShapSegError(f"cannot read {path}: {e}", "bad_result") from None


def _on_grid(seg: dict, image: sitk.Image, segment: str | None = None) -> np.ndarray:
    """A segmentation's labels (or one segment's mask) on the CT (view)'s voxel grid, (z, y, x)."""
    import slicerio
    voxels = slicerio.segment_mask(seg, segment) if segment else seg["voxels"]
    ijk_to_lps = np.asarray(seg["ijkToLPS"], float)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3) @ np.diag(image.GetSpacing())
    if not np.allclose(ijk_to_lps[:3, :3], direction, atol=1e-4):
        raise ShapSegError("the CT does not have the result's voxel grid (another spacing or orientation)",
                           "bad_result")
    offset = np.linalg.solve(ijk_to_lps[:3, :3], np.asarray(image.GetOrigin()) - ijk_to_lps[:3, 3])
    start = np.round(offset).astype(int)
    if not np.allclose(offset, start, atol=1e-3):
        raise ShapSegError("the CT's voxels are shifted against the result's; give the CT the result came from",
                           "bad_result")
    size = np.asarray(image.GetSize())
    out = np.zeros(tuple(size), voxels.dtype)                   # i, j, k
    lo, hi = np.maximum(start, 0), np.minimum(start + size, voxels.shape[-3:])
    if np.all(hi > lo):
        source = tuple(slice(a, b) for a, b in zip(lo, hi))
        out[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))] = voxels[source]
    return out.transpose(2, 1, 0)


def to_lps(array: np.ndarray, ct: sitk.Image) -> np.ndarray:
    """An array in the CT's SimpleITK layout, reoriented to LPS axes (z, y, x)."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(ct)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
