"""Writing one explanation's files, atomically.

Everything is written into a hidden sibling folder ``.NAME.partial-PID`` that is renamed
to ``--out`` only when every file is complete, so a failed, cancelled or killed run never
leaves a folder that looks finished. An existing ``--out`` is replaced only if it holds a
previous result (``explanation.json``) or nothing; anything else is refused up front.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..colors import phi_colors
from ..display import color_scale
from ..errors import ShapSegError
from ..report.inputs import write_image

RESULT_MARKER = "explanation.json"
TAG = "ShapSegExplain"


class OutputFolder:
    """``with OutputFolder(out) as tmp: ...write into tmp...`` then ``commit()``; leaving the
    block without a commit (an error, a cancel) removes the partial folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out).absolute()
        restore_previous(self.out)
        check_output_folder(self.out)
        self.tmp = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        self.committed = False

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.out.parent.glob(glob.escape(f".{self.out.name}.partial-") + "*"):
            if not _alive(stale.name.rsplit("-", 1)[-1]):         # left by a killed run
                shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        return self.tmp

    def commit(self) -> Path:
        """Replace ``out`` by the finished folder (the old result, if any, is removed after)."""
        check_output_folder(self.out)
        old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
        with _signals_held():      # a stop request now would leave neither the old nor the new result
            if self.out.exists():
                self.out.rename(old)
            self.tmp.rename(self.out)
            self.committed = True
        shutil.rmtree(old, ignore_errors=True)
        return self.out

    def __exit__(self, *exc) -> None:
        if not self.committed:
            shutil.rmtree(self.tmp, ignore_errors=True)


def restore_previous(out: Path) -> None:
    """A run killed between the two renames of ``commit`` left the previous result as
    ``.NAME.old-PID`` and no ``out``: put it back (the caller holds ``out``'s lock)."""
    pattern = glob.escape(f".{out.name}.old-") + "*"
    for old in sorted(out.parent.glob(pattern)) if out.parent.is_dir() else []:
        if _alive(old.name.rsplit("-", 1)[-1]):
            continue
        if not out.exists() and (old / RESULT_MARKER).is_file():
            old.rename(out)
        else:
            shutil.rmtree(old, ignore_errors=True)


def _alive(pid: str) -> bool:
    """Whether the process that owns a partial folder still runs (unknown counts as yes)."""
    if not pid.isdigit() or os.name == "nt":
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@contextmanager
def _signals_held():
    """Delay SIGTERM/SIGINT (POSIX) until the block is done."""
    held = {signal.SIGTERM, signal.SIGINT}
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if can:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def check_output_folder(out: Path) -> None:
    """``out`` may be new, empty, or a previous result; never a file or someone's folder."""
    if out.is_file():
        raise ShapSegError(f"--out {out} is a file; give a folder", "bad_output")
    if out.is_dir() and any(out.iterdir()) and not (out / RESULT_MARKER).is_file():
        raise ShapSegError(f"--out {out} exists and is not a ShapSegExplain result; choose a new or empty "
                           "folder (a previous result there is replaced)", "bad_output")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    try:                # a real file, not os.access: that says yes to root on a read-only folder
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise ShapSegError(f"--out {out}: cannot write to {parent} ({e.strerror or e})", "bad_output") from None


# ----- images ------------------------------------------------------------------------------------
def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """4×4 voxel (i, j, k) -> LPS mm matrix of a SimpleITK image (slicerio's ``ijkToLPS``)."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(image.GetDirection(), float).reshape(3, 3) @ np.diag(image.GetSpacing())
    m[:3, 3] = image.GetOrigin()
    return m


def segment_name(name: str, phi: float) -> str:
    """``liver (+0.42)``: the player's name and its φ with three significant digits, in ASCII
    (NRRD headers are ASCII: pynrrd, which slicerio uses, refuses anything else)."""
    return f"{_ascii(name)} ({phi:+.3g})"


def write_players_seg(path: Path, ct: sitk.Image, ids_ct: np.ndarray, rows: list[dict]) -> None:
    """One segment per player (label value = id + 1), named with φ, coloured on the diverging
    map, φ, SE and what the player is in the segment's tags (Slicer keeps them)."""
    import slicerio
    phi = np.array([r["phi"] for r in rows])
    colors = phi_colors(phi, color_scale(phi, [r["kind"] != "context" for r in rows]))   # the report's scale
    dtype = np.uint8 if len(rows) < 255 else np.uint16
    segments = []
    for r, color in zip(rows, colors):
        tags = {f"{TAG}.phi": repr(float(r["phi"])), f"{TAG}.se": repr(float(r["se"])),
                f"{TAG}.kind": r["kind"],
                f"{TAG}.organ": _ascii_tag(r["organ"] or ""), f"{TAG}.ml": repr(float(r["ml"]))}
        segments.append({"id": f"player_{r['id']}", "name": segment_name(r["name"], r["phi"]),
                         "labelValue": r["id"] + 1, "layer": 0, "color": [round(float(c), 6) for c in color],
                         "tags": tags})
    seg = {"voxels": np.ascontiguousarray(ids_ct.transpose(2, 1, 0)).astype(dtype), "ijkToLPS": ijk_to_lps(ct),
           "segments": segments}
    slicerio.write_segmentation(str(path), seg)


def _ascii(text: str) -> str:
    """Accents dropped, other non-ASCII characters removed (NRRD headers are ASCII)."""
    import unicodedata
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _ascii_tag(text: str) -> str:
    """A tag value NRRD and Slicer's tag syntax (``key:value|``) both accept."""
    return _ascii(text).replace("|", "/").replace(":", "-")


def write_roi_seg(path: Path, ct: sitk.Image, roi_ct: np.ndarray, prediction_ct: np.ndarray, target: str) -> None:
    """The ROI and the unperturbed prediction of the target near it (overlapping, so two layers)."""
    import slicerio
    seg = slicerio.create_segmentation(roi_ct.shape[::-1], ijk_to_lps(ct))
    slicerio.add_segment(seg, roi_ct.transpose(2, 1, 0) > 0,
                         {"id": "roi", "name": "ROI", "color": [1.0, 0.85, 0.0]})
    slicerio.add_segment(seg, prediction_ct.transpose(2, 1, 0) > 0,
                         {"id": "prediction", "name": f"{_ascii_tag(target)} (model prediction near the ROI)",
                          "color": [0.2, 0.8, 0.3]})
    slicerio.write_segmentation(str(path), seg)


def write_attribution(path: Path, ct: sitk.Image, ids_ct: np.ndarray, phi: np.ndarray) -> None:
    """φ of each voxel's player (0 outside every player), float32 in the CT's geometry."""
    lut = np.concatenate([[0.0], np.asarray(phi, float)]).astype(np.float32)
    image = sitk.GetImageFromArray(lut[ids_ct])
    image.CopyInformation(ct)
    write_image(image, path)


# ----- tables --------------------------------------------------------------------------------------
CSV_FIELDS = ("id", "name", "kind", "organ", "voxels", "ml", "phi", "se", "ci95_low", "ci95_high", "rank",
              "purity", "roi_voxels", "centroid_r", "centroid_a", "centroid_s")


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            ras = r.get("centroid_ras") or [None] * 3
            w.writerow({**r, "centroid_r": ras[0], "centroid_a": ras[1], "centroid_s": ras[2],
                        "organ": r["organ"] or ""})


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=_plain))


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_audit(path: Path, coalitions: np.ndarray, values: np.ndarray, seed: int) -> None:
    """Every evaluated (coalition, value) pair, so a run can be audited or re-fitted."""
    np.savez_compressed(path, coalitions=np.packbits(np.asarray(coalitions, bool), axis=1),
                        n_players=np.int64(np.shape(coalitions)[1]), values=np.asarray(values, float),
                        seed=np.int64(seed))
