"""An explanation job: every input of one run as plain, JSON-serialisable fields.

The command line (``shapseg explain``), the worker (``shapseg worker JOB.json``) and the
Slicer module all describe a run with this one schema, so a job file written by the GUI
means exactly what the same options mean on the command line. Keys are the long option
names with ``_`` for ``-``; ROI coordinates are lists instead of comma-separated text.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..choices import DEVICES, REFINE_BY, SPLITS, STRATEGIES, allowed, check_choice
from ..errors import ShapSegError
from ..shapley.settings import ShapleySettings

ROI_KINDS = ("roi_mask", "roi_box", "roi_box_ras", "roi_point", "roi_point_ras")
ROI_SIZES = {"roi_box": 6, "roi_box_ras": 6, "roi_point": 3, "roi_point_ras": 3}
JOB_VERSION = 1


@dataclass(kw_only=True)
class ExplainJob(ShapleySettings):
    """Inputs of one explanation; defaults are the command line's. The estimator's options
    are ``ShapleySettings``' fields, inherited: one definition of each."""
    ct: str
    model: str
    target: str
    out: str
    roi_mask: str | None = None
    roi_box: list[float] | None = None
    roi_box_ras: list[float] | None = None
    roi_point: list[float] | None = None
    roi_point_ras: list[float] | None = None
    snap_mm: float = 5.0
    # players
    players: str = "hybrid"
    spacing_mm: float = 15.0
    margin_mm: float = 20.0
    min_size_ml: float | None = None
    speck_ml: float = 0.1
    anatomy: str | None = None
    anatomy_labels: str | None = None
    slic_compactness: float = 0.1
    slic_segments: int | None = None
    slic_anatomy: bool = True
    context_player: bool = True
    levels: int = 4                 # coarse to fine: organ units, then cells of 60, 30, 15 mm (1 = flat players)
    refinements: int = 6            # at most this many players refined (bench_cost: 5-6 match the paper's AOPC)
    refine_share: float = 0.03      # ... each carrying at least this share of Σ|φ|
    refine_by: str = "volume"       # ... the largest |φ|·volume first (bench_cost: kidney box), or |φ| ("phi")
    split: str = "proportional"     # children share the parent's φ in proportion to their values (or "equal")
    # what is explained
    value: str = "soft_dice"
    normalized: bool = False
    reference: str | None = None
    # the run's stop rule and the evaluator (the estimator's options: ``ShapleySettings``)
    budget: int | None = None
    strategy: str = "memo"
    seed: int = 0
    time_limit: float | None = None
    budget_forwards: int | None = None
    baseline_hu: float = -1024.0
    tolerance: float = 0.0          # prune ROI tiles whose Gaussian share stays at or below this (0 = exact)
    # a proxy game with these tiles frozen, corrected by exact values (0 = none); 0.25: bench_cost (docs/performance.md)
    proxy_tolerance: float = 0.25
    faithfulness_steps: int = 10
    # model
    configuration: str | None = None
    folds: list[str] | None = None
    checkpoint: str = "checkpoint_final.pth"
    mirroring: bool = False         # TTA multiplies every coalition's cost by 8 in 3D: off unless asked
    step: float = 0.5
    device: str = "auto"
    batch_size: int = 0             # tiles per network call; 0 = from memory (nnunet.memory)
    trust_checkpoint: bool = False  # unpickle anything the checkpoint holds (else only nnU-Net's own types)
    max_memory_gb: float | None = None   # host memory for the tile memo and a CPU batch (default: half available)
    # bookkeeping (not inputs of the computation)
    preview: str | None = None      # where to write the player map as soon as it exists (live overlay)
    resume: bool = False            # go on from an interrupted run's journal (``run.journal``)
    extra: dict = field(default_factory=dict)

    def roi_kind(self) -> str:
        given = [k for k in ROI_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ShapSegError(f"give exactly one ROI ({', '.join(ROI_KINDS)}); got "
                               f"{', '.join(given) or 'none'}", "bad_job")
        return given[0]

    def check(self) -> "ExplainJob":
        """Types, ranges and every choice field (against the engine's own constants), all
        checked without reading any file: a bad job fails before a model is loaded."""
        for k in ("ct", "model", "out"):
            if not isinstance(getattr(self, k), str) or not getattr(self, k):
                raise ShapSegError(f"'{k}' must be a non-empty path", "bad_job")
        kind = self.roi_kind()
        if kind in ROI_SIZES:
            v = getattr(self, kind)
            if not isinstance(v, (list, tuple)) or len(v) != ROI_SIZES[kind] or \
                    not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise ShapSegError(f"'{kind}' needs {ROI_SIZES[kind]} numbers, got {v!r}", "bad_job")
            setattr(self, kind, [float(x) for x in v])
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 1):
            raise ShapSegError(f"budget must be a positive whole number of coalitions, got {self.budget!r}",
                               "bad_budget")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ShapSegError("time-limit must be positive (seconds)", "bad_option")
        if self.max_memory_gb is not None and not self.max_memory_gb > 0:
            raise ShapSegError(f"max-memory must be positive (GiB), got {self.max_memory_gb!r}", "bad_option")
        for name, least in (("levels", 1), ("budget_forwards", 1), ("refinements", 0)):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < least):
                raise ShapSegError(f"{name.replace('_', '-')} must be a whole number ≥ {least}, got {v!r}", "bad_option")
        ShapleySettings.check(self)
        share = "at least 0 and below 1 (a share of the fused logits)"
        for name, ok, what in (("tolerance", lambda x: 0 <= x < 1, share), ("proxy_tolerance", lambda x: 0 <= x < 1, share),
                               ("refine_share", lambda x: 0 <= x <= 1, "between 0 and 1")):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not ok(v):
                raise ShapSegError(f"{name.replace('_', '-')} must be {what}, got {v!r}", "bad_option")
        for name, names in (("players", allowed("players")), ("value", allowed("value")), ("strategy", STRATEGIES),
                            ("refine_by", REFINE_BY), ("split", SPLITS)):
            check_choice(name, getattr(self, name), names)
        if not (self.device in DEVICES or (isinstance(self.device, str) and self.device.startswith("cuda:"))):
            check_choice("device", self.device, DEVICES)
        if not isinstance(self.faithfulness_steps, int) or self.faithfulness_steps < 0:
            raise ShapSegError("faithfulness-steps must be 0 (off) or a positive whole number", "bad_option")
        if not 0 < float(self.step) <= 1:
            raise ShapSegError("step must be in (0, 1]", "bad_option")
        for name in ("trust_checkpoint", "resume"):          # "false" in a job file must not mean yes
            if not isinstance(getattr(self, name), bool):
                raise ShapSegError(f"{name.replace('_', '-')} must be true or false, got {getattr(self, name)!r}",
                                   "bad_option")
        self.target = str(self.target)
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["version"] = JOB_VERSION
        return d

    def write(self, path: str | Path) -> Path:
        """Write the job file (what the Slicer module does before starting the worker)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path


def job_from_dict(data: dict) -> ExplainJob:
    """A checked job from a dict (a job file's content); unknown keys are an error."""
    if not isinstance(data, dict):
        raise ShapSegError("a job must be a JSON object", "bad_job")
    data = dict(data)
    version = data.pop("version", JOB_VERSION)
    if version != JOB_VERSION:
        raise ShapSegError(f"job version {version} is not supported (this worker reads version {JOB_VERSION})",
                           "bad_job")
    known = {f.name for f in fields(ExplainJob)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ShapSegError(f"unknown job field(s): {', '.join(unknown)}", "bad_job")
    missing = [k for k in ("ct", "model", "target", "out") if k not in data]
    if missing:
        raise ShapSegError(f"the job lacks {', '.join(missing)}", "bad_job")
    annotations = {f.name: str(f.type) for f in fields(ExplainJob)}
    for name, value in data.items():
        if not _has_type(value, annotations[name]):
            raise ShapSegError(f"job field '{name}' must be {annotations[name].replace(' | None', ' or null')}, "
                               f"got {value!r}", "bad_job")
    return ExplainJob(**data).check()


_SCALARS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,)}


def _has_type(value, annotation: str) -> bool:
    """Whether a JSON value fits a field's annotation (``str``, ``float | None``,
    ``list[float] | None``, ...); JSON has no int/bool split, so ``true`` is no number.
    Hand-written: the annotations are strings here, and must be read on Slicer's Python 3.9."""
    for part in annotation.split(" | "):
        if part == "None" and value is None:
            return True
        if part.startswith("list[") and isinstance(value, list):
            item = part[5:-1]
            if all(_has_type(v, "str | int" if item == "str" else item) for v in value):   # folds: 0 or "all"
                return True
        elif part in _SCALARS and isinstance(value, _SCALARS[part]) and \
                (part == "bool" or not isinstance(value, bool)):
            return True
    return False


def read_job(path: str | Path) -> ExplainJob:
    """A checked job from a JSON file, with a clear error for a missing or broken file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShapSegError(f"job file not found: {path}", "bad_job") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShapSegError(f"cannot read the job file {path}: {e}", "bad_job") from None
    try:
        return job_from_dict(data)
    except ShapSegError as e:
        raise ShapSegError(f"job file {path}: {e.message}", e.code) from None
