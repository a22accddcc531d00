"""What the Slicer module does around the engine, done here with SimpleITK so the module's run
path (panel request → job → worker process → events → result view) is tested without Slicer."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ShapSegExplainLib.panel.run_request import RunRequest


def ras_bounds_of_mask(path: str) -> list[float]:
    """Slicer's RAS bounds (xmin, xmax, ymin, ymax, zmin, zmax) of a mask's voxel box, as a
    markups ROI drawn tight around it would give."""
    image = sitk.ReadImage(path)
    ijk = np.argwhere(sitk.GetArrayFromImage(image) > 0)[:, ::-1]
    corners = []
    for c in np.array(np.meshgrid(*[[lo - 0.5, hi + 0.5] for lo, hi in zip(ijk.min(0), ijk.max(0))])).T.reshape(-1, 3):
        x, y, z = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in c])
        corners.append((-x, -y, z))                     # LPS → RAS
    corners = np.array(corners)
    lo, hi = corners.min(0), corners.max(0)
    return [lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]]


def demo_request(case, folder: Path, model: str, budget: int = 0, **overrides) -> RunRequest:
    """The request the module's self-test makes for the demo case: a box around the drawn
    region, the true kidney as reference and the organs as anatomy (labels renumbered in
    segment order, as Slicer's export does)."""
    f = case.files
    names = {int(k): v for k, v in json.loads(Path(f["anatomy_labels"]).read_text()).items()}
    anatomy = sitk.ReadImage(f["anatomy"])
    arr = sitk.GetArrayFromImage(anatomy)
    renumbered = np.zeros_like(arr)
    exported = {}
    for i, (value, name) in enumerate(sorted(names.items())):
        renumbered[arr == value] = i + 1
        exported[i + 1] = name
    out = sitk.GetImageFromArray(renumbered)
    out.CopyInformation(anatomy)
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(out, str(folder / "anatomy.nrrd"), True)
    settings = dict(ct=f["ct"], model=str(model), target="kidney_left", region="box",
                    ras_bounds=ras_bounds_of_mask(f["roi"]), reference=f["reference"],
                    anatomy=str(folder / "anatomy.nrrd"), anatomy_names=exported, players="hybrid",
                    spacing_mm=20.0, margin_mm=10.0, fixed_context=True, value="soft_fp", budget=budget,
                    device="cpu", mirroring=False)
    settings.update(overrides)
    return RunRequest(**settings)


def poll_until(worker, state, until, timeout: float = 600.0, tick: float = 0.05) -> list[dict]:
    """Poll a ``WorkerProcess`` as the module's timer does; returns every event seen."""
    seen, t0 = [], time.monotonic()
    while not until(seen):
        for e in worker.poll():
            state.update(e)
            seen.append(e)
        if worker.finished:
            break
        assert time.monotonic() - t0 < timeout, "the worker did not finish in time"
        time.sleep(tick)
    return seen
