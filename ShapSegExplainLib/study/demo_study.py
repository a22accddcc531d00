"""``shapseg study --demo``: a small study on seeded phantoms that runs on 2 cores in a few
minutes. Two phantoms with the kidney-bright mimic (the demo's false positive, ROI drawn
around it) and the first of them again without it (the same region drawn: a control where
the model should find nothing); three abstractions × two value functions: 18 explanations."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..demo import DEMO_MODEL
from ..demo.demo_case import DEMO_TOLERANCE, TARGET, write_demo_case

FP_SEEDS = (11, 12)
CONTROL_SEEDS = (11,)    # the first phantom again, without its mimic
GRID = {"players": ["organ", "fcc", "hybrid"], "value": ["soft_fp", "soft_dice"]}
# the demo explanation's settings (``demo.demo_case.demo_job``)
DEFAULTS = {"model": str(DEMO_MODEL), "target": TARGET, "spacing_mm": 20.0, "margin_mm": 10.0,
            "context_player": False, "tolerance": DEMO_TOLERANCE, "mirroring": False}


def write_demo_study(folder: Path) -> Path:
    """The phantoms' files and ``demo_study.yaml`` in ``folder``; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = [demo_case(folder, seed, True) for seed in FP_SEEDS] + [demo_case(folder, seed, False)
                                                                      for seed in CONTROL_SEEDS]
    manifest = folder / "demo_study.yaml"
    manifest.write_text("# shapseg study --demo: phantoms with and without the mimic (paths relative to this file)\n"
                        + yaml.safe_dump({"defaults": DEFAULTS, "grid": GRID, "cases": cases}, sort_keys=False))
    return manifest


def demo_case(folder: Path, seed: int, mimic: bool) -> dict:
    """Phantom ``seed`` with the ROI drawn around its mimic, or (a control) where it would be."""
    name = f"{'fp' if mimic else 'nomimic'}_s{seed}"
    files = write_demo_case(folder / name, seed, mimic).files
    field = {"roi": "roi_mask"}             # the demo case's file keys are the job's fields but this one
    return {"id": name, **{field.get(k, k): str(Path(v).relative_to(folder)) for k, v in files.items()}}
