"""``shapseg study --demo``: a small study on seeded phantoms that runs on 2 cores in a few
minutes. Two phantoms with the kidney-bright mimic (the demo's false positive, ROI drawn
around it) and the first of them again without it (the same region drawn: a control where
the model should find nothing); three abstractions × two value functions: 18 explanations."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from ..demo import DEMO_MODEL
from ..demo.demo_case import DEMO_TOLERANCE, ROI_GROW_MM, TARGET, roi_around, write_demo_case
from ..demo.phantom import LABELS, make_phantom

FP_SEEDS = (11, 12)
CONTROL_SEEDS = (11,)    # the first phantom again, without its mimic
GRID = {"players": ["organ", "fcc", "hybrid"], "value": ["soft_fp", "soft_dice"]}
# the demo explanation's settings (``demo.demo_case.demo_job``)
DEFAULTS = {"model": str(DEMO_MODEL), "target": TARGET, "spacing_mm": 20.0, "margin_mm": 10.0,
            "context_player": False, "tolerance": DEMO_TOLERANCE, "mirroring": False}


def write_demo_study(folder: Path) -> Path:
    """The phantoms' files and ``demo_study.yaml`` in ``folder``; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = [fp_case(folder, seed) for seed in FP_SEEDS] + [control_case(folder, seed) for seed in CONTROL_SEEDS]
    manifest = folder / "demo_study.yaml"
    manifest.write_text("# shapseg study --demo: phantoms with and without the mimic (paths relative to this file)\n"
                        + yaml.safe_dump({"defaults": DEFAULTS, "grid": GRID, "cases": cases}, sort_keys=False))
    return manifest


def fp_case(folder: Path, seed: int) -> dict:
    """The demo's false positive on phantom ``seed``: ROI drawn around the mimic."""
    files = write_demo_case(folder / f"fp_s{seed}", seed).files
    field = {"roi": "roi_mask"}             # the demo case's file keys are the job's fields but this one
    return {"id": f"fp_s{seed}", **{field.get(k, k): str(Path(v).relative_to(folder)) for k, v in files.items()}}


def control_case(folder: Path, seed: int) -> dict:
    """Phantom ``seed`` without the mimic (the same organs: the mimic is painted last), with
    the region drawn where the mimic would be: the model should find nothing there."""
    with_mimic = make_phantom(seed=seed, mimic=True)
    ph = make_phantom(seed=seed, mimic=False)
    sub = folder / f"nomimic_s{seed}"
    sub.mkdir(parents=True, exist_ok=True)
    roi = roi_around(with_mimic.mimic, ph.ct.GetSpacing()[::-1], ROI_GROW_MM)
    masks = {"roi_drawn.nii.gz": roi, "reference_kidney_left.nii.gz": ph.label_array == LABELS[TARGET]}
    for name, mask in masks.items():
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.CopyInformation(ph.ct)
        sitk.WriteImage(image, str(sub / name), True)
    for name, image in (("phantom_ct.nii.gz", ph.ct), ("phantom_labels.nii.gz", ph.labels)):
        sitk.WriteImage(image, str(sub / name), True)
    (sub / "phantom_labels.json").write_text(json.dumps({str(k): v for k, v in ph.names.items()}))
    rel = lambda n: f"nomimic_s{seed}/{n}"          # noqa: E731
    return {"id": f"nomimic_s{seed}", "ct": rel("phantom_ct.nii.gz"), "roi_mask": rel("roi_drawn.nii.gz"),
            "reference": rel("reference_kidney_left.nii.gz"), "anatomy": rel("phantom_labels.nii.gz"),
            "anatomy_labels": rel("phantom_labels.json")}
