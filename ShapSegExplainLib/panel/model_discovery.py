"""Models a user already has: the shipped demo model and the nnU-Net v2 models that
TotalSegmentator downloaded on this computer (for the Slicer module's model list).

TotalSegmentator keeps its weights in ``$TOTALSEG_WEIGHTS_PATH`` if set, else in
``$TOTALSEG_HOME_DIR/nnunet/results`` (default home ``~/.totalsegmentator``), as nnU-Net
results folders ``Dataset*/Trainer__Plans__configuration/`` with ``plans.json``,
``dataset.json`` and ``fold_*/checkpoint_final.pth``. Nothing is imported from
TotalSegmentator; only folders are listed (fast: no torch).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FoundModel:
    label: str
    path: Path
    source: str             # "demo" or "totalsegmentator"
    classes: tuple[str, ...]


def totalsegmentator_results_dirs(env: dict | None = None, home: Path | None = None) -> list[Path]:
    """Where TotalSegmentator's nnU-Net results may be, in its own order of precedence."""
    env = os.environ if env is None else env
    dirs = []
    if env.get("TOTALSEG_WEIGHTS_PATH"):
        dirs.append(Path(env["TOTALSEG_WEIGHTS_PATH"]))
    base = Path(env["TOTALSEG_HOME_DIR"]) if env.get("TOTALSEG_HOME_DIR") else \
        (home or Path.home()) / ".totalsegmentator"
    dirs.append(base / "nnunet" / "results")
    return dirs


def is_model_folder(path) -> bool:
    """A folder a user may pick: it has nnU-Net's ``dataset.json`` (the panel's first check)."""
    return bool(path) and str(path) not in ("", ".") and (Path(path) / "dataset.json").is_file()


def model_classes(folder: Path) -> tuple[str, ...]:
    """The foreground class names of a model folder, from its dataset.json (empty if unreadable)."""
    try:
        labels = json.loads((folder / "dataset.json").read_text()).get("labels", {})
    except (OSError, json.JSONDecodeError):
        return ()
    return tuple(k for k, v in labels.items() if v not in (0, "0") and k != "background")


def _complete(folder: Path) -> bool:
    return (folder / "plans.json").is_file() and (folder / "dataset.json").is_file() and \
        any(folder.glob("fold_*/checkpoint_final.pth"))


def find_models(demo_model: Path | None = None, env: dict | None = None, home: Path | None = None) -> list[FoundModel]:
    """The demo model (if present) first, then every complete TotalSegmentator model folder."""
    found = []
    if demo_model is not None and _complete(demo_model):
        found.append(FoundModel("ShapSegExplain demo model (phantoms)", demo_model, "demo", model_classes(demo_model)))
    seen = set()
    for results in totalsegmentator_results_dirs(env, home):
        for folder in sorted(results.glob("Dataset*/*__*__*")):
            if folder.resolve() in seen or not _complete(folder):
                continue
            seen.add(folder.resolve())
            dataset, trainer = folder.parent.name, folder.name.split("__")
            label = f"TotalSegmentator {dataset.split('_', 1)[-1]} ({trainer[-1]})"
            found.append(FoundModel(label, folder, "totalsegmentator", model_classes(folder)))
    return found
