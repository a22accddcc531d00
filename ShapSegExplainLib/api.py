"""The Python API: one call from a CT, a model and a target to an explanation, for notebooks
and scripts. It builds the same ``ExplainJob`` the command line and the Slicer module build,
runs it through the same engine, and wraps the output folder it wrote, so a result made here
is a result made there (``shapseg report OUT`` re-draws it, Slicer loads it)."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from .errors import ShapSegError
from .run.job import ExplainJob

IN_MEMORY = "(a SimpleITK image in memory)"     # the job's ``ct`` when the caller passed the image
TABLE_COLUMNS = ("id", "name", "kind", "organ", "ml", "phi", "se", "rank", "coarse", "level")


@dataclass
class Explanation:
    """A finished explanation: ``content`` is its ``explanation.json``, ``out`` the folder of
    its files (a temporary one unless ``explain(out=...)`` named it; ``save`` keeps it)."""
    content: dict
    out: Path
    temporary: bool = field(default=False, repr=False)     # ``out`` is the API's own temporary folder

    @property
    def table(self) -> list[dict]:
        """One record per player, largest |φ| first: ``pandas.DataFrame(expl.table)``."""
        rows = sorted(self.content["players"], key=lambda r: -abs(r["phi"]))
        return [{k: r.get(k) for k in TABLE_COLUMNS} for r in rows]

    @property
    def phi(self) -> np.ndarray:
        """φ by player id (the ids of ``player_map``)."""
        return np.array([r["phi"] for r in self.content["players"]])

    @property
    def se(self) -> np.ndarray:
        return np.array([r["se"] for r in self.content["players"]])

    @property
    def player_map(self) -> np.ndarray:
        """Player id per CT voxel, (z, y, x) as ``sitk.GetArrayFromImage(ct)``; −1 outside every player."""
        import slicerio
        seg = slicerio.read_segmentation(str(self.out / "players.seg.nrrd"))
        return seg["voxels"].transpose(2, 1, 0).astype(np.int32) - 1

    @property
    def resolution(self) -> list[str]:
        """The verdict in words: which drivers stand clear of the rest, or that none do yet."""
        from .display import resolution_lines
        return resolution_lines(self.content["players"])

    def report(self, to: str | Path | None = None, window: str | None = None,
               show_uncertain: bool = False) -> Path:
        """``report.png`` (re-drawn when any option is given), as ``shapseg report``."""
        if to is None and window is None and not show_uncertain:
            return self.out / "report.png"
        from .report.figure import write_report
        return write_report(self.out, to, window=window, show_uncertain=show_uncertain)

    def save(self, folder: str | Path) -> "Explanation":
        """Every output file into ``folder`` (a new folder; the temporary one is moved there)."""
        folder = Path(folder).resolve()
        if folder.exists():
            raise ShapSegError(f"{folder} exists; give a new folder", "bad_output")
        if self.temporary:
            shutil.move(self.out, folder)
            shutil.rmtree(self.out.parent, ignore_errors=True)
        else:
            shutil.copytree(self.out, folder)
        self.out, self.temporary = folder, False
        self.content["out"] = str(folder)
        self.content["files"] = {k: str(folder / Path(v).name) for k, v in self.content.get("files", {}).items()}
        return self

    @classmethod
    def load(cls, folder: str | Path) -> "Explanation":
        """A finished result folder (from ``shapseg explain``, the module, or ``save``)."""
        from .report.inputs import read_result
        return cls(read_result(folder), Path(folder))


def explain(ct: str | Path | sitk.Image, model: str | Path, target: str, *,
            roi: str | Path | np.ndarray | None = None, out: str | Path | None = None,
            on_event: Callable[[dict], None] | None = None, **settings) -> Explanation:
    """Explain ``model``'s ``target`` segmentation of ``ct`` in a region.

    ``roi``: a mask file in the CT's geometry, or a boolean array shaped like
    ``sitk.GetArrayFromImage(ct)``; or give ``roi_point_ras=[r, a, s]`` / ``roi_box_ras=[...]``
    instead. ``settings`` are ``ExplainJob``'s fields, the command line's options with ``_``
    (``players="organ"``, ``value="soft_fp"``, ``levels=1``, ``time_limit=60``, ...).
    ``on_event`` receives the run's events (progress, players, partial φ). Bad input raises
    ``ShapSegError`` with the command line's one-line message."""
    unknown = sorted(set(settings) - {f.name for f in fields(ExplainJob)})
    if unknown:
        raise ShapSegError(f"unknown setting(s): {', '.join(unknown)} (ExplainJob's fields)", "bad_option")
    from .run.explain import run_explanation
    with tempfile.TemporaryDirectory(prefix="shapseg-api-") as tmp:
        image = ct if isinstance(ct, sitk.Image) else None
        ct_path = str(ct) if image is None else IN_MEMORY      # the run reads the image itself, no copy
        if isinstance(roi, np.ndarray):
            settings["roi_mask"] = _write_mask(roi, image if image is not None else sitk.ReadImage(ct_path),
                                               Path(tmp) / "roi.nrrd")
        elif roi is not None:
            settings["roi_mask"] = str(roi)
        folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="shapseg-")) / "explanation"
        try:
            job = ExplainJob(ct=ct_path, model=str(model), target=str(target), out=str(folder), **settings)
            content = run_explanation(job, emit=on_event, ct_image=image)
        except BaseException:
            if out is None:                 # the API's own temporary folder: nothing left behind
                shutil.rmtree(folder.parent, ignore_errors=True)
            raise
    return Explanation(content, Path(content["out"]), temporary=out is None)


def _write_mask(mask: np.ndarray, ct: sitk.Image, path: Path) -> str:
    shape = tuple(ct.GetSize()[::-1])
    if mask.shape != shape:
        raise ShapSegError(f"the ROI array has shape {mask.shape}, the CT {shape} (z, y, x)", "bad_roi")
    image = sitk.GetImageFromArray(np.asarray(mask, bool).astype(np.uint8))
    image.CopyInformation(ct)
    sitk.WriteImage(image, str(path), True)
    return str(path)
