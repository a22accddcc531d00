"""The held-out collection, step 1: real findings of a real nnU-Net on CTs it never saw.

``abdo7-small`` (trained on the shared CT alone) segments transformed versions of that CT:
left–right flipped, shifted, rotated, zoomed, cropped, noised, blurred, contrast changed.
nnU-Net's own ``nnUNetPredictor`` segments each; its mistakes against the transformed
TotalSegmentator labels are the findings:

* ``fp``: a connected piece of organ c where the reference has no c (value ``soft_fp``);
* ``boundary``: a missed piece of organ c beside the predicted organ (value ``soft_dice``
  over the piece and the predicted organ around it);
* ``tp``: a predicted organ that overlaps its reference (value ``soft_dice``).

The ROI is a mask, as a reader drawing around the finding gives it; the players are the
default's (hybrid, its coarse level the organ units of the transformed TotalSegmentator map,
passed as ``--anatomy``). Each candidate is set up through the engine to count its organ
players M and what enumerating all 2^M coalitions costs (Σ over ROI tiles of 2^(players in
the tile)); those with 6 ≤ M ≤ 12 (below 6 the default enumerates already) and a cost within
``--max-forwards`` are kept, up to ``QUOTA`` per transform and kind, largest pieces first.

The split into tuning and held-out is written here, **before any estimator is tuned**: a
finding is a tuning case when the SHA-256 of its id ends in a digit below 4 (of 16), else
held-out; ``split.json`` records the rule and the result. Work files (transformed CTs,
predictions, masks) go to ``--work``, never into the project.

    python benchmarks/heldout/make_findings.py [--work DIR] [--max-forwards 2400]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = ROOT.parent / "shared"
CT = SHARED / "data" / "totalseg-example" / "ct.nii.gz"
SEG = SHARED / "data" / "totalseg-example" / "seg_total.nii.gz"
LABELS = SHARED / "data" / "totalseg-example" / "labels_total.json"
MODEL = SHARED / "models" / "abdo7-small"
FINDINGS = HERE / "findings.json"
SPLIT = HERE / "split.json"
ABDO7 = {"liver": 1, "spleen": 2, "kidney_right": 3, "kidney_left": 4, "stomach": 5, "aorta": 6, "vertebrae": 7}
TOTALSEG = {5: 1, 1: 2, 2: 3, 3: 4, 6: 5, 52: 6, 30: 7, 31: 7, 32: 7, 33: 7}     # abdo7-small's README
MIN_ML = 1.5            # smaller pieces are noise, not findings a reader would click
MAX_TP_ML = 150.0       # a larger organ's ROI reaches too many tiles to enumerate
MIN_PLAYERS = 6         # fewer: the default enumerates the organ game already
MAX_PLAYERS = 12
QUOTA = {"fp": 2, "boundary": 1, "tp": 1}     # per transform
TUNING_DIGITS = "0123"  # a quarter of the findings tune, the rest are held out


@dataclass
class Variant:
    """A transformed CT: a name and what was done (applied to the CT and, nearest, to the labels)."""
    name: str
    flip: bool = False
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)     # array axes (z, y, x)
    rotate_deg: float = 0.0
    zoom: float = 1.0
    crop_slices: tuple[int, int] = (0, 0)
    noise_hu: float = 0.0
    blur_mm: float = 0.0
    contrast: float = 1.0
    seed: int = 0


VARIANTS = [
    Variant("flip_lr", flip=True),
    Variant("flip_lr_noise", flip=True, noise_hu=25.0, seed=1),
    Variant("shift", shift_mm=(6.0, -12.0, 15.0)),
    Variant("rotate", rotate_deg=12.0),
    Variant("zoom", zoom=1.12),
    Variant("crop", crop_slices=(5, 3)),
    Variant("noise", noise_hu=45.0, seed=2),
    Variant("blur", blur_mm=3.0),
    Variant("contrast", contrast=0.7),
    Variant("rotate_contrast", rotate_deg=-10.0, contrast=1.3),
]


@dataclass
class Finding:
    id: str
    variant: str
    kind: str               # fp, boundary, tp
    target: str
    value: str
    ml: float
    roi_mask: str           # relative to the work folder
    ct: str
    anatomy: str
    anatomy_labels: str
    reference: str
    players: int = 0
    enumeration_forwards: int = 0


def transform(arr: np.ndarray, v: Variant, spacing: float, labels: bool) -> np.ndarray:
    """The variant's geometry on an array (z, y, x); labels nearest, CT linear with air outside."""
    order, fill = (0, 0) if labels else (1, -1024.0)
    out = arr.astype(np.int16 if labels else np.float32)
    if v.flip:
        out = out[:, :, ::-1]
    if v.rotate_deg:
        out = ndimage.rotate(out, v.rotate_deg, axes=(1, 2), reshape=False, order=order, cval=fill)
    if v.zoom != 1.0:
        centre = (np.array(out.shape) - 1) / 2
        scale = np.array([1.0, 1 / v.zoom, 1 / v.zoom])
        out = ndimage.affine_transform(out, scale, offset=centre - scale * centre, order=order, cval=fill)
    if any(v.shift_mm):
        out = ndimage.shift(out, np.array(v.shift_mm) / spacing, order=order, cval=fill)
    lo, hi = v.crop_slices
    return out[lo:out.shape[0] - hi]


def make_ct(ct: sitk.Image, v: Variant) -> sitk.Image:
    arr = transform(sitk.GetArrayFromImage(ct), v, ct.GetSpacing()[0], labels=False)
    if v.blur_mm:
        arr = ndimage.gaussian_filter(arr, v.blur_mm / ct.GetSpacing()[0])
    if v.contrast != 1.0:
        arr = np.where(arr > -500, 40 + (arr - 40) * v.contrast, arr)
    if v.noise_hu:
        arr = arr + np.random.default_rng(v.seed).normal(0, v.noise_hu, arr.shape)
    return like(arr.astype(np.int16), ct, v)


def like(arr: np.ndarray, ref: sitk.Image, v: Variant) -> sitk.Image:
    """``arr`` with the reference's geometry (the origin moved by the cropped slices)."""
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(ref.GetSpacing())
    img.SetDirection(ref.GetDirection())
    img.SetOrigin(ref.TransformIndexToPhysicalPoint((0, 0, v.crop_slices[0])))
    return img


def swapped_sides(names: dict[str, str]) -> dict[str, str]:
    """Label names with left and right exchanged: on a flipped CT the organ on the patient's
    left is the left one, whichever side it grew on."""
    swap = {"_left": "_right", "_right": "_left"}
    out = {}
    for k, n in names.items():
        for a, b in swap.items():
            if n.endswith(a):
                n = n[: -len(a)] + b
                break
        out[k] = n
    return out


def reference_labels(seg: np.ndarray, names: dict[str, str]) -> np.ndarray:
    """abdo7-small's labels from TotalSegmentator's, by name (so a flip's swapped names hold)."""
    ref = np.zeros(seg.shape, np.uint8)
    for value, name in names.items():
        if name in ABDO7:
            ref[seg == int(value)] = ABDO7[name]
        elif name in ("vertebrae_T11", "vertebrae_T12", "vertebrae_L1", "vertebrae_L2"):
            ref[seg == int(value)] = ABDO7["vertebrae"]
    return ref


def predictor():
    """nnU-Net's own predictor on abdo7-small (CPU, no mirroring: the engine's default)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False, device=torch.device("cpu"),
                        perform_everything_on_device=False, allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(MODEL), use_folds=("all",), checkpoint_name="checkpoint_final.pth")
    return p


def predict(p, ct_path: Path) -> np.ndarray:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    img, props = SimpleITKIO().read_images([str(ct_path)])
    return np.asarray(p.predict_single_npy_array(img, props, None, None, False))


def pieces(mask: np.ndarray, unit_ml: float) -> list[np.ndarray]:
    """Connected pieces (26-connected) of at least ``MIN_ML``, largest first."""
    lab, n = ndimage.label(mask, np.ones((3, 3, 3)))
    sizes = np.bincount(lab.ravel())[1:]
    return [lab == i + 1 for i in np.argsort(-sizes) if sizes[i] * unit_ml >= MIN_ML]


def candidates(pred: np.ndarray, ref: np.ndarray, unit_ml: float) -> list[tuple[str, str, np.ndarray]]:
    """(kind, target, ROI mask) of each mistake and match, false positives first."""
    out: dict[str, list] = {"fp": [], "boundary": [], "tp": []}
    for name, c in ABDO7.items():
        p, r = pred == c, ref == c
        out["fp"] += [("fp", name, m) for m in pieces(p & ~r, unit_ml)[:2]]
        near = ndimage.binary_dilation(p, iterations=2)
        for m in pieces(r & ~p & near, unit_ml)[:1]:
            roi = ndimage.binary_dilation(m, iterations=2) & (m | p)
            out["boundary"].append(("boundary", name, roi))
        tp = pieces(p & r, unit_ml)
        if tp and p.sum() * unit_ml <= MAX_TP_ML:
            out["tp"].append(("tp", name, p))
    return out["fp"] + out["boundary"] + out["tp"]


def split_of(finding_id: str) -> str:
    return "tuning" if hashlib.sha256(finding_id.encode()).hexdigest()[-1] in TUNING_DIGITS else "heldout"


def enumeration_cost(f: Finding, work: Path) -> tuple[int, int]:
    """(organ players M, tile forwards to enumerate their game) as the default run builds them."""
    sys.path.insert(0, str(HERE))
    from record_findings import setup
    with tempfile.TemporaryDirectory() as tmp:
        s = setup(f, work, Path(tmp))
        return s.m, s.enumeration_forwards()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "shapseg-heldout")
    ap.add_argument("--max-forwards", type=int, default=2400)
    ap.add_argument("--files-only", action="store_true",
                    help="only write the recorded findings' files into --work (a new machine), keeping findings.json and split.json")
    args = ap.parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    ct, seg = sitk.ReadImage(str(CT)), sitk.ReadImage(str(SEG))
    names = json.loads(LABELS.read_text())
    unit_ml = float(np.prod(ct.GetSpacing())) / 1000
    p = predictor()
    recorded = {f["id"] for f in json.loads(FINDINGS.read_text())["findings"]} if args.files_only else set()
    findings: list[Finding] = []
    for v in VARIANTS:
        d = work / v.name
        d.mkdir(exist_ok=True)
        vnames = swapped_sides(names) if v.flip else names
        sitk.WriteImage(make_ct(ct, v), str(d / "ct.nii.gz"), True)
        seg_v = like(transform(sitk.GetArrayFromImage(seg), v, ct.GetSpacing()[0], labels=True), ct, v)
        sitk.WriteImage(sitk.Cast(seg_v, sitk.sitkUInt8), str(d / "anatomy.nii.gz"), True)
        (d / "anatomy.json").write_text(json.dumps(vnames))
        ref = reference_labels(sitk.GetArrayFromImage(seg_v), vnames)
        pred = predict(p, d / "ct.nii.gz")
        kept = dict.fromkeys(QUOTA, 0)
        for k, (kind, target, roi) in enumerate(candidates(pred, ref, unit_ml)):
            if kept[kind] == QUOTA[kind]:
                continue
            fid = f"{v.name}-{kind}-{target}-{k}"
            if args.files_only and fid not in recorded:
                continue
            sitk.WriteImage(like(roi.astype(np.uint8), ct, v), str(d / f"{fid}.roi.nii.gz"), True)
            sitk.WriteImage(like((ref == ABDO7[target]).astype(np.uint8), ct, v), str(d / f"{target}.ref.nii.gz"), True)
            f = Finding(fid, v.name, kind, target, "soft_fp" if kind == "fp" else "soft_dice",
                        round(float(roi.sum() * unit_ml), 1), f"{v.name}/{fid}.roi.nii.gz", f"{v.name}/ct.nii.gz",
                        f"{v.name}/anatomy.nii.gz", f"{v.name}/anatomy.json", f"{v.name}/{target}.ref.nii.gz")
            if args.files_only:
                findings.append(f)
                continue
            f.players, f.enumeration_forwards = enumeration_cost(f, work)
            ok = MIN_PLAYERS <= f.players <= MAX_PLAYERS and f.enumeration_forwards <= args.max_forwards
            print(f"{fid}: {f.ml} mL, M={f.players}, {f.enumeration_forwards} forwards{'' if ok else ' (left out)'}",
                  flush=True)
            if ok:
                findings.append(f)
                kept[kind] += 1
    if args.files_only:
        missing = recorded - {f.id for f in findings}
        print(f"{len(findings)} findings' files written to {work}" + (f"; not found: {sorted(missing)}" if missing else ""))
        raise SystemExit(1 if missing else 0)
    FINDINGS.write_text(json.dumps({"command": "python benchmarks/heldout/make_findings.py",
                                    "findings": [asdict(f) for f in findings]}, indent=1) + "\n")
    split = {f.id: split_of(f.id) for f in findings}
    SPLIT.write_text(json.dumps({"rule": f"tuning when the last hex digit of sha256(id) is in {TUNING_DIGITS!r}, "
                                         "else held-out; written before any tuning", "split": split}, indent=1) + "\n")
    print(f"{len(findings)} findings, {sum(s == 'heldout' for s in split.values())} held out: {FINDINGS}, {SPLIT}")


if __name__ == "__main__":
    main()
