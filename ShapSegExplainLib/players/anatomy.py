"""The anatomy map players are built from: organ labels over the crop on the network grid.

Source: the model's own unperturbed prediction (default), or a label map in the CT's
geometry (NIfTI/NRRD label image, or a Slicer ``.seg.nrrd`` read with ``slicerio``),
resampled nearest-neighbour onto the network grid. Unlabelled voxels are split into
"other tissue" (inside the body) and "outside body" (air around the patient), so the
remainder never becomes one giant player. Specks (pieces of a label inside the support
smaller than ``speck_ml``) join the label they share the most boundary with; the map
after that cleaning is the one players are built from and measured against.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import ShapSegError
from ..nnunet.case import Case, check_same_geometry
from ..nnunet.grid import RoiPlan
from .fragments import connected_pieces, merge_small

OUTSIDE_BODY = "outside body"
OTHER_TISSUE = "other tissue"
OUTSIDE, OTHER = 0, 1


@dataclass
class Anatomy:
    """Organ codes over the crop (-1 on padding) and their names; code 0/1 = outside body/other tissue."""
    codes: np.ndarray
    names: list[str]
    labels: list[int | None]
    source: str
    reassigned_voxels: int = 0

    def name(self, code: int) -> str:
        return self.names[code]


# ----- reading ---------------------------------------------------------------------------
def read_label_names(path: str | Path) -> dict[int, str]:
    """Label names from a JSON file ({"1": "spleen"}, {"spleen": 1}, or a dataset.json with
    "labels") or a colour table text file (lines "value name r g b a")."""
    path = Path(path)
    if not path.is_file():
        raise ShapSegError(f"label file not found: {path}", "bad_anatomy")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ShapSegError(f"label file {path} is not valid JSON ({e.msg}, line {e.lineno})", "bad_anatomy") from e
        return _names_from_json(data, path)
    names = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#") and parts[0].lstrip("-").isdigit() and len(parts) >= 2:
            names[int(parts[0])] = parts[1]
    if not names:
        raise ShapSegError(f"no 'value name' lines in the label file {path}", "bad_anatomy")
    return names


def _names_from_json(data, path) -> dict[int, str]:
    if isinstance(data, dict) and isinstance(data.get("labels"), dict):
        data = data["labels"]
    if not isinstance(data, dict) or not data:
        raise ShapSegError(f"label file {path} must map label values to names", "bad_anatomy")
    names: dict[int, str] = {}
    for k, v in data.items():
        if isinstance(v, str) and str(k).lstrip("-").isdigit():
            names[int(k)] = v
        elif isinstance(v, int) and not isinstance(v, bool):
            names[v] = str(k)
    if not names:
        raise ShapSegError(f"label file {path} has no 'value: name' pairs", "bad_anatomy")
    return names


def model_label_names(case: Case) -> dict[int, str]:
    """Label value -> name from the model's dataset.json."""
    return {int(v): str(k) for k, v in case.model.dataset_json["labels"].items()
            if isinstance(v, int) and not isinstance(v, bool)}


def read_label_map(case: Case, path: str | Path) -> tuple[np.ndarray, dict[int, str] | None]:
    """A label map in the CT's geometry (SimpleITK array order) and any names it carries."""
    path = Path(path)
    if not path.is_file():
        raise ShapSegError(f"anatomy map not found: {path}", "bad_anatomy")
    if path.name.lower().endswith(".seg.nrrd"):
        return _read_seg_nrrd(case, path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ShapSegError(f"cannot read the anatomy map {path}: {str(e).strip().splitlines()[-1]}",
                           "bad_anatomy") from e
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ShapSegError(f"anatomy map {path} has several components per voxel; a label map is needed",
                           "bad_anatomy")
    check_same_geometry(case.ct, image, f"anatomy map {path}", "bad_anatomy")
    arr = sitk.GetArrayFromImage(image)
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any()):
        raise ShapSegError(f"anatomy map {path} is not a label map (non-integer values)", "bad_anatomy")
    if arr.min() < 0:
        raise ShapSegError(f"anatomy map {path} has negative labels", "bad_anatomy")
    return arr.astype(np.int32), None


def _read_seg_nrrd(case: Case, path: Path) -> tuple[np.ndarray, dict[int, str]]:
    """A Slicer segmentation: segments become labels 1..n in file order, resampled onto the CT."""
    import slicerio
    try:
        seg = slicerio.read_segmentation(str(path))
        names = slicerio.segment_names(seg)
        flat = slicerio.extract_segments(seg, [(n, i + 1) for i, n in enumerate(names)])
    except Exception as e:  # noqa: BLE001 - slicerio raises plain exceptions for bad files
        raise ShapSegError(f"cannot read the segmentation {path}: {e}", "bad_anatomy") from e
    ijk_to_lps = np.asarray(flat["ijkToLPS"], float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.asarray(flat["voxels"]).astype(np.int16).transpose(2, 1, 0))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    image.SetDirection((ijk_to_lps[:3, :3] / spacing).reshape(-1).tolist())
    on_ct = sitk.Resample(image, case.ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    return sitk.GetArrayFromImage(on_ct).astype(np.int32), {i + 1: n for i, n in enumerate(names)}


# ----- body ------------------------------------------------------------------------------
def body_mask(ct: sitk.Image, threshold_hu: float = -500.0) -> np.ndarray:
    """The patient's body in the CT's grid (SimpleITK order).

    Voxels above ``threshold_hu``; the largest connected piece and any piece at least a
    fifth its size (arms); holes filled slice by slice in the axial plane, so lungs and
    bowel gas count as body while the air around the patient does not."""
    arr = sitk.GetArrayViewFromImage(ct) > threshold_hu
    pieces, n = ndimage.label(arr)
    if n == 0:
        return arr.copy()
    sizes = np.bincount(pieces.reshape(-1))[1:]
    keep = np.flatnonzero(sizes >= 0.2 * sizes.max()) + 1
    body = np.isin(pieces, keep)
    direction = np.asarray(ct.GetDirection(), float).reshape(3, 3)
    axial = 2 - int(np.argmax(np.abs(direction[2])))
    moved = np.moveaxis(body, axial, 0)
    filled = np.stack([ndimage.binary_fill_holes(s) for s in moved])
    return np.moveaxis(filled, 0, axial)


# ----- the map over the crop ---------------------------------------------------------------
def predicted_labels(case: Case, plan: RoiPlan, support: np.ndarray, predictor=None) -> np.ndarray:
    """The model's unperturbed labels on the support (network image grid), exact, tile by tile."""
    from ..nnunet.roi import UnperturbedPrediction
    predictor = predictor or UnperturbedPrediction(case)
    region = plan.crop_to_image(support, False)
    return predictor.labels(region)


def to_crop(plan: RoiPlan, image_array: np.ndarray, fill) -> np.ndarray:
    """A network-image-grid array cut to the crop (padding gets ``fill``)."""
    return plan.grid.pad(np.asarray(image_array), fill)[plan.crop]


def build_anatomy(case: Case, plan: RoiPlan, support: np.ndarray, source: str | Path | None = None,
                  names_file: str | Path | None = None, speck_ml: float = 0.1, predictor=None) -> Anatomy:
    """The cleaned anatomy map over the crop, from the model's prediction or a label map file."""
    if source is None:
        labels_net = predicted_labels(case, plan, support, predictor)
        file_names, origin = None, "model prediction"
    else:
        labels_ct, file_names = read_label_map(case, source)
        values, compact = np.unique(labels_ct, return_inverse=True)   # any label values survive int16
        if values.size > 32767:
            raise ShapSegError(f"anatomy map {source} has {values.size} labels; at most 32767 are supported",
                               "bad_anatomy")
        compact_net = case.labels_to_network(compact.reshape(labels_ct.shape).astype(np.int16), nearest=True)
        labels_net = values[compact_net].astype(np.int64)
        origin = str(source)
    names = read_label_names(names_file) if names_file else (file_names or model_label_names(case))
    body_net = case.labels_to_network(body_mask(case.ct).astype(np.int16), nearest=True) > 0
    labels = to_crop(plan, labels_net, -1)
    body = to_crop(plan, body_net, False)
    return encode_anatomy(labels, body, support, names, origin, _voxels(speck_ml, case.spacing))


def encode_anatomy(labels: np.ndarray, body: np.ndarray, support: np.ndarray, names: dict[int, str],
                   source: str, speck_voxels: int) -> Anatomy:
    """Compact codes (outside body, other tissue, then labels present, ascending) and speck cleaning."""
    present = sorted(int(v) for v in np.unique(labels) if v > 0)
    lut = {v: i + 2 for i, v in enumerate(present)}
    codes = np.where(body, OTHER, OUTSIDE).astype(np.int32)
    for v, c in lut.items():
        codes[labels == v] = c
    codes[labels < 0] = -1
    cleaned = clean_specks(codes, support, speck_voxels)
    return Anatomy(codes=cleaned, names=[OUTSIDE_BODY, OTHER_TISSUE] + [names.get(v, f"label {v}") for v in present],
                   labels=[None, None] + present, source=source,
                   reassigned_voxels=int((cleaned != codes).sum()))


def clean_specks(codes: np.ndarray, support: np.ndarray, speck_voxels: int) -> np.ndarray:
    """Pieces of a code inside the support smaller than ``speck_voxels`` take their main neighbour's code."""
    pieces = connected_pieces(codes, support)
    if pieces.max() == 0:
        return codes
    piece_code = np.zeros(int(pieces.max()) + 1, np.int32)
    piece_code[pieces[support]] = codes[support]
    merged = merge_small(pieces, speck_voxels)
    out = codes.copy()
    out[support] = piece_code[merged[support]]
    return out


def _voxels(ml: float, spacing) -> int:
    return int(np.ceil(ml * 1000.0 / float(np.prod(spacing))))
