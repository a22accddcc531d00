"""A study manifest: cases (CT, model, target, ROI, optional reference and anatomy) and a
grid of settings, expanded into one ``ExplainJob`` per (case, setting).

Two forms, one meaning (docs/studies.md):

* **YAML**: ``cases:`` (a list of mappings), optional ``defaults:`` (fields every case gets)
  and ``grid:`` (field -> list of values; every combination is one explanation per case).
* **CSV**: one case per row, a column per field; a cell holding several values separated by
  ``|`` is that case's grid over the field. Lists (``roi_box``, ``roi_point``) are written
  ``10,20,5,40,60,20``.

Fields are ``id`` plus the fields of ``ExplainJob`` (the ``shapseg explain`` option names
with ``_``), except ``out``; paths are relative to the manifest's folder. Everything is
checked here, before any work, and a bad manifest is one line naming its row.
"""
from __future__ import annotations

import csv
import itertools
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import ShapSegError
from ..run.job import ROI_KINDS, ROI_SIZES, ExplainJob, job_from_dict

NOT_IN_MANIFEST = ("out", "preview", "resume", "extra")
FIELDS = {f.name: str(f.type) for f in fields(ExplainJob) if f.name not in NOT_IN_MANIFEST}
PATH_FIELDS = ("ct", "model", "roi_mask", "reference", "anatomy", "anatomy_labels")
REQUIRED = ("id", "ct", "model", "target")
CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class StudyTask:
    """One explanation of a study: its case, its setting (the grid's values, as a label
    that is also its folder name), the manifest row it came from, and the job."""
    case: str
    setting: str
    grid: dict
    row: int
    job: dict

    @property
    def key(self) -> str:
        return f"{self.case}/{self.setting}"


def read_manifest(path: str | Path, out: str | Path) -> list[StudyTask]:
    """Every explanation a manifest asks for, checked; outputs go to ``out/CASE/SETTING``."""
    path = Path(path)
    if not path.is_file():
        raise ShapSegError(f"study manifest not found: {path}", "bad_manifest")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise ShapSegError(f"study manifest {path}: use a .csv or .yaml file", "bad_manifest")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ShapSegError(f"cannot read the study manifest {path}: {e}", "bad_manifest") from None
    rows, grid = _csv_rows(text, path) if suffix == ".csv" else _yaml_rows(text, path)
    check_ids(rows, path)
    tasks = [t for row, case in rows for t in expand(case, grid, row, path, Path(out))]
    if not tasks:
        raise ShapSegError(f"study manifest {path} lists no cases", "bad_manifest")
    return tasks


def where(path: Path, row: int, case: dict | None = None) -> str:
    """How a message names a manifest row."""
    name = f" (case '{case['id']}')" if case and case.get("id") else ""
    return f"study manifest {path.name}, row {row}{name}"


# ----- the two forms -------------------------------------------------------------------------------
def _yaml_rows(text: str, path: Path) -> tuple[list[tuple[int, dict]], dict]:
    """(row, case) pairs and the grid of a YAML manifest; rows are 1-based case numbers."""
    import yaml
    try:
        data = yaml.safe_load(text)         # safe_load: a manifest never constructs objects
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise ShapSegError(f"study manifest {path.name} is not valid YAML{at}", "bad_manifest") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ShapSegError(f"study manifest {path.name} needs a 'cases:' list", "bad_manifest")
    unknown = sorted(set(data) - {"cases", "defaults", "grid"})
    if unknown:
        raise ShapSegError(f"study manifest {path.name}: unknown section(s) {', '.join(unknown)} "
                           "(cases, defaults, grid)", "bad_manifest")
    defaults, grid = data.get("defaults") or {}, data.get("grid") or {}
    for name, section in (("defaults", defaults), ("grid", grid)):
        if not isinstance(section, dict):
            raise ShapSegError(f"study manifest {path.name}: '{name}' must be a mapping", "bad_manifest")
        _known(section, f"study manifest {path.name}, {name}", "field")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ShapSegError(f"study manifest {path.name}, grid: '{name}' must be a non-empty list", "bad_manifest")
    rows = []
    for i, case in enumerate(data["cases"], 1):
        if not isinstance(case, dict):
            raise ShapSegError(f"{where(path, i)}: a case must be a mapping of fields", "bad_manifest")
        _known(case, where(path, i, case), "field")
        rows.append((i, {**defaults, **case}))
    return rows, grid


def _csv_rows(text: str, path: Path) -> tuple[list[tuple[int, dict]], dict]:
    """(row, case) pairs of a CSV manifest; rows are line numbers (the header is row 1)."""
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    _known(dict.fromkeys(header), f"study manifest {path.name}, row 1 (the header)", "column")
    rows = []
    for line, raw in enumerate(reader, 2):
        if None in raw:
            raise ShapSegError(f"{where(path, line)}: more cells than columns", "bad_manifest")
        cells = {k.strip(): (v or "").strip() for k, v in raw.items()}
        case = {k: _cell(k, v, where(path, line, cells)) for k, v in cells.items() if v}
        if case:
            rows.append((line, case))
    return rows, {}


def _known(mapping: dict, at: str, what: str) -> None:
    unknown = [k for k in mapping if k != "id" and k not in FIELDS]
    if unknown:
        raise ShapSegError(f"{at}: unknown {what} '{unknown[0]}'"
                           + (" (each explanation's folder is chosen by the study)" if unknown[0] == "out" else ""),
                           "bad_manifest")


def _cell(name: str, text: str, at: str):
    """A CSV cell as the field's type; ``a|b`` is a grid (a list of values)."""
    values = [_scalar(name, v.strip(), at) for v in text.split("|")]
    return values if len(values) > 1 else values[0]


def _scalar(name: str, text: str, at: str):
    kind = FIELDS.get(name, "str")
    try:
        if kind.startswith("list["):
            return [float(v) for v in text.split(",")] if name in ROI_SIZES else [v.strip() for v in text.split(",")]
        if kind.startswith("bool"):
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "yes", "1")
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise ShapSegError(f"{at}: '{name}' must be {kind.replace(' | None', '')}, got '{text}'",
                           "bad_manifest") from None
    return text


# ----- checks and expansion ------------------------------------------------------------------------
def check_ids(rows: list[tuple[int, dict]], path: Path) -> None:
    """Every case has a unique id that can name a folder."""
    seen: dict[str, int] = {}
    for row, case in rows:
        cid = case.get("id")
        if not isinstance(cid, (str, int)) or isinstance(cid, bool) or not CASE_ID.match(str(cid)):
            raise ShapSegError(f"{where(path, row)}: 'id' must be a name of letters, digits, '.', '_' or '-', "
                               f"got {cid!r}", "bad_manifest")
        case["id"] = str(cid)
        if case["id"] in seen:
            raise ShapSegError(f"{where(path, row, case)}: duplicate case id (also row {seen[case['id']]})",
                               "bad_manifest")
        seen[case["id"]] = row


def grid_of(case: dict, grid: dict) -> dict[str, list]:
    """The grid of one case: the manifest's, with the case's own lists of values over it
    (a list is a grid only for a field that is not itself a list, or a list of lists)."""
    out = dict(grid)
    for name, value in case.items():
        if isinstance(value, list) and (not FIELDS.get(name, "").startswith("list[")
                                        or (value and isinstance(value[0], list))):
            out[name] = value
    return out


def setting_label(values: dict) -> str:
    """A setting's name and folder: ``players-organ_value-dice``; ``default`` without a grid."""
    if not values:
        return "default"
    text = "_".join(f"{k}-{_short(v)}" for k, v in values.items())
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text)


def _short(v) -> str:
    return ",".join(f"{x:g}" for x in v) if isinstance(v, list) else (f"{v:g}" if isinstance(v, float) else str(v))


def expand(case: dict, grid: dict, row: int, path: Path, out: Path) -> list[StudyTask]:
    """One checked task per combination of the case's grid."""
    at = where(path, row, case)
    missing = [k for k in REQUIRED if case.get(k) in (None, "")]
    if missing:
        raise ShapSegError(f"{at}: missing {', '.join(missing)}", "bad_manifest")
    axes = grid_of(case, grid)
    tasks = []
    for combo in itertools.product(*axes.values()):
        values = dict(zip(axes, combo))
        label = setting_label(values)
        fields_ = {**{k: v for k, v in case.items() if k != "id"}, **values}
        job = resolve_paths(fields_, path.parent, at)
        job["out"] = str((out / case["id"] / label).absolute())
        try:
            job = job_from_dict(job).to_dict()
        except ShapSegError as e:
            raise ShapSegError(f"{at}{'' if not values else ', setting ' + label}: {e.message}", "bad_manifest") \
                from None
        check_images(job, at)
        check_target(job, at)
        tasks.append(StudyTask(case["id"], label, values, row, job))
    labels = [t.setting for t in tasks]
    if len(set(labels)) != len(labels):
        raise ShapSegError(f"{at}: two settings share the folder name {labels[0]}", "bad_manifest")
    return tasks


def resolve_paths(job: dict, base: Path, at: str) -> dict:
    """Paths made absolute (relative to the manifest) and checked to exist."""
    out = dict(job)
    for name in PATH_FIELDS:
        value = out.get(name)
        if value in (None, ""):
            continue
        p = Path(str(value)).expanduser()
        p = p if p.is_absolute() else base / p
        ok = p.is_dir() if name == "model" else (p.exists() if name == "ct" else p.is_file())
        if not ok:
            raise ShapSegError(f"{at}: {name} not found: {p}", "bad_manifest")
        out[name] = str(p.resolve())
    return out


def check_images(job: dict, at: str) -> None:
    """A voxel box or point inside the CT; masks and label maps of the CT's size (headers
    only; a DICOM folder is checked when the explanation loads it)."""
    if not Path(job["ct"]).is_file():
        return
    size = _image_size(job["ct"], at, "ct")
    for name in ("roi_mask", "reference", "anatomy"):
        if job.get(name) and _image_size(job[name], at, name) != size:
            raise ShapSegError(f"{at}: the {name} image's size differs from the CT's {list(size)}", "bad_manifest")
    kind = next(k for k in ROI_KINDS if job.get(k) is not None)
    if kind in ("roi_box", "roi_point"):
        v = [int(round(x)) for x in job[kind]]
        corners = [v[:3], v[3:]] if kind == "roi_box" else [v]
        if any(not 0 <= c[a] < size[a] for c in corners for a in range(3)):
            raise ShapSegError(f"{at}: {kind} {v} lies outside the CT (size {list(size)} voxels)", "bad_manifest")


def _image_size(path: str, at: str, name: str) -> tuple[int, ...]:
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise ShapSegError(f"{at}: cannot read the {name} image {path}", "bad_manifest") from None
    return tuple(reader.GetSize())


def check_target(job: dict, at: str) -> None:
    """The folder is an nnU-Net results folder (found as the explanation finds it) and the
    target one of its ``dataset.json`` labels; the checkpoints are read when the explanation
    loads it."""
    from ..nnunet.model import resolve_model_dir
    try:
        folder = resolve_model_dir(job["model"], job.get("configuration"))
    except ShapSegError as e:
        raise ShapSegError(f"{at}: {e.message}", "bad_manifest") from None
    try:
        labels = json.loads((folder / "dataset.json").read_text()).get("labels", {})
    except (OSError, ValueError):
        return
    values = {str(v[0] if isinstance(v, list) else v) for v in labels.values()}
    if str(job["target"]) not in labels and str(job["target"]) not in values - {"0"}:
        names = ", ".join(k for k in labels if k != "background")
        raise ShapSegError(f"{at}: target '{job['target']}' is not a label of the model ({names})", "bad_manifest")
