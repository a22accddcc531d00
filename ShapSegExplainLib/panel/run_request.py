"""What the Slicer panel asks for, as plain values, turned into a run folder with a job file.

The module exports the CT (and the reference and anatomy, resampled to the CT) into a fresh
run folder, fills a ``RunRequest`` from the panel and calls ``prepare_run``; everything from
here on is plain Python, tested with pytest. Panel conventions: 0 means "automatic" for the
budget and the minimum size and "no limit" for the time limit; folds are typed as "0 1 2"
(empty = all); a box comes as Slicer's RAS bounds (xmin, xmax, ymin, ymax, zmin, zmax).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ShapSegError
from ..run.job import ExplainJob

REGIONS = ("box", "point", "segment")
JOB_FILE, RESULT_DIR, PREVIEW_FILE, ANATOMY_LABELS_FILE = "job.json", "result", "players_preview.nrrd", \
    "anatomy_labels.json"


@dataclass
class RunRequest:
    ct: str
    model: str
    target: str
    region: str = "point"
    ras_bounds: list[float] | None = None
    ras_point: list[float] | None = None
    roi_mask: str | None = None          # region "segment": the picked piece, exported on the CT's grid
    snap_mm: float = 5.0
    reference: str | None = None
    anatomy: str | None = None
    anatomy_names: dict[int, str] | None = None
    players: str = "hybrid"
    spacing_mm: float = 15.0
    margin_mm: float = 20.0
    min_size_ml: float = 0.0
    fixed_context: bool = False
    value: str = "soft_dice"
    normalized: bool = False
    budget: int = 0
    time_limit_s: float = 0.0
    seed: int = 0
    device: str = "auto"
    mirroring: bool = False
    configuration: str = ""
    folds: str = ""
    trust_checkpoint: bool = False       # the user said yes for this model folder (the panel asks once)


@dataclass
class LiveRun:
    """One started run as the panel follows it: its folder and job, a label for its nodes, the
    players once the worker names them, and the live overlay node (a Slicer node, or None)."""
    folder: Path
    job: ExplainJob
    label: str
    players: list[dict] = field(default_factory=list)
    preview: object = None


def run_label(volume: str, target: str, value: str, players: str) -> str:
    """How a run's nodes are named: CT, target, value and players."""
    return f"{volume}-{target}-{value}-{players}"


def box_from_bounds(bounds) -> list[float]:
    """Slicer's (xmin, xmax, ymin, ymax, zmin, zmax) as the job's RAS corners (x0, y0, z0, x1, y1, z1)."""
    if bounds is None or len(bounds) != 6:
        raise ShapSegError("place a ROI box around the finding first", "bad_region")
    b = [float(v) for v in bounds]
    lo, hi = b[0::2], b[1::2]
    if not all(h > l for l, h in zip(lo, hi)):
        raise ShapSegError("the ROI box is empty; give it a size in all three directions", "bad_region")
    return lo + hi


def parse_folds(text: str) -> list[str] | None:
    """'0 1 2' or '0,1' → ['0', '1', '2']; empty → None (every fold present)."""
    folds = [f for f in re.split(r"[\s,;]+", text.strip()) if f]
    if any(not (f.isdigit() or f == "all") for f in folds):
        raise ShapSegError(f"folds must be numbers such as '0 1 2' (or 'all'), got '{text}'", "bad_option")
    return folds or None


def region_fields(request: RunRequest) -> dict:
    if request.region == "box":
        return {"roi_box_ras": box_from_bounds(request.ras_bounds)}
    if request.region == "point":
        if request.ras_point is None or len(request.ras_point) != 3:
            raise ShapSegError("place a point on the finding first", "bad_region")
        return {"roi_point_ras": [float(v) for v in request.ras_point]}
    if request.region == "segment":
        if not request.roi_mask:
            raise ShapSegError("choose the segment to explain first", "bad_region")
        return {"roi_mask": str(request.roi_mask)}
    raise ShapSegError(f"region must be one of {', '.join(REGIONS)}, got '{request.region}'", "bad_region")


def job_for(request: RunRequest, folder: Path) -> ExplainJob:
    """The job that runs ``request`` with its outputs in ``folder/result``."""
    if not request.target:
        raise ShapSegError("choose the target class to explain", "bad_target")
    anatomy_labels = str(folder / ANATOMY_LABELS_FILE) if request.anatomy and request.anatomy_names else None
    return ExplainJob(
        ct=request.ct, model=request.model, target=str(request.target), out=str(folder / RESULT_DIR),
        snap_mm=request.snap_mm, players=request.players, spacing_mm=request.spacing_mm, margin_mm=request.margin_mm,
        min_size_ml=request.min_size_ml or None, context_player=not request.fixed_context, anatomy=request.anatomy, anatomy_labels=anatomy_labels,
        value=request.value, normalized=request.normalized, reference=request.reference,
        budget=int(request.budget) or None, seed=int(request.seed), time_limit=request.time_limit_s or None,
        configuration=request.configuration or None, folds=parse_folds(request.folds),
        mirroring=request.mirroring, device=request.device, preview=str(folder / PREVIEW_FILE),
        trust_checkpoint=bool(request.trust_checkpoint),
        **region_fields(request),
    ).check()


def prepare_run(folder: str | Path, request: RunRequest) -> tuple[Path, ExplainJob]:
    """Write the anatomy's label names and the job file into ``folder``; returns the job file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    job = job_for(request, folder)
    if job.anatomy_labels:
        names = {str(int(k)): str(v) for k, v in request.anatomy_names.items()}
        Path(job.anatomy_labels).write_text(json.dumps(names, indent=2))
    return job.write(folder / JOB_FILE), job


def saved_coalitions(job: ExplainJob) -> int:
    """Coalitions an interrupted run of ``job`` keeps in its journal (0: nothing to resume),
    so the panel can offer to go on after the worker died."""
    from ..run.journal import check_resumable, journal_folder, read_records
    try:
        check_resumable(job)
    except ShapSegError:
        return 0
    return sum(len(c) for _, c, *_ in read_records(journal_folder(job.out) / "values.bin"))


def resume_run(folder: str | Path, job: ExplainJob) -> tuple[Path, ExplainJob]:
    """The job file of ``folder`` rewritten to go on from its journal (``--resume``)."""
    job = replace(job, resume=True).check()
    return job.write(Path(folder) / JOB_FILE), job


def new_run_folder(root: str | Path, label: str) -> Path:
    """A fresh folder ``root/YYYYmmdd-HHMMSS-label`` (a suffix keeps two runs in one second apart)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:60] or "run"
    base = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    folder, n = base, 1
    while True:
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
