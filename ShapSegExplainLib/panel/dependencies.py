"""The Python packages the worker needs, pinned as in ``pyproject.toml``, and which are missing.

Slicer's Python starts without torch and nnU-Net. The module checks with ``missing()`` (a
``find_spec`` lookup: nothing is imported, so the check is instant) and offers to install:
torch through the PyTorch extension when present (it picks the build for the computer's
GPU), the rest with Slicer's pip helper. ``Testing/slicer/test_slicer_module.py`` checks that
``REQUIREMENTS`` says the same as ``pyproject.toml``.
"""
from __future__ import annotations

import importlib.util

# (import name, pip requirement); torch and torchvision first, as a matching pair
REQUIREMENTS: tuple[tuple[str, str], ...] = (
    ("torch", "torch>=2.4"),
    ("torchvision", "torchvision>=0.19"),
    ("nnunetv2", "nnunetv2>=2.6"),
    ("numpy", "numpy>=1.26"),
    ("scipy", "scipy>=1.11"),
    ("SimpleITK", "SimpleITK>=2.3"),
    ("skimage", "scikit-image>=0.22"),
    ("sklearn", "scikit-learn>=1.3"),
    ("slicerio", "slicerio>=1.4"),
    ("matplotlib", "matplotlib>=3.8"),
    ("tqdm", "tqdm>=4.60"),
    ("psutil", "psutil>=5.9"),
    ("filelock", "filelock>=3.12"),
)
TORCH_PACKAGES = ("torch", "torchvision")


def missing(find_spec=importlib.util.find_spec) -> list[str]:
    """The requirement strings of the packages that cannot be imported here."""
    out = []
    for module, requirement in REQUIREMENTS:
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(requirement)
    return out


def split_torch(requirements: list[str]) -> tuple[list[str], list[str]]:
    """(torch requirements, the others): torch goes through the PyTorch extension when it is there."""
    names = {r: r.split(">")[0].split("=")[0].split("<")[0] for r in requirements}
    torch = [r for r in requirements if names[r] in TORCH_PACKAGES]
    return torch, [r for r in requirements if r not in torch]


def version_requirement(module: str) -> str:
    """The version part of a requirement, as PyTorchUtils expects it (torch → '>=2.4')."""
    requirement = dict(REQUIREMENTS)[module]
    return requirement[len(requirement.rstrip("<>=!~.0123456789,")):]


# ----- which Slicer can run the engine ---------------------------------------------------------------
# nnunetv2 >= 2.6 (the engine is tested with 2.8) requires Python >= 3.10; the last line for
# Python 3.9 (2.5.2) would also need torch <= 2.8, the last cp39 build. Slicer 5.6 and 5.8 ship
# Python 3.9.10, so the oldest Slicer the module supports is 5.10 (Python 3.12).
MIN_SLICER = (5, 10)
MIN_PYTHON = (3, 10)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in str(text).split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def unsupported(python: tuple[int, ...], slicer_version: str | None) -> str | None:
    """One line saying why this Slicer cannot run explanations (too old), or None."""
    old_python = tuple(python[:2]) < MIN_PYTHON
    old_slicer = bool(slicer_version) and _version_tuple(slicer_version)[:2] < MIN_SLICER
    if not (old_python or old_slicer):
        return None
    return (f"ShapSeg Explain needs 3D Slicer {MIN_SLICER[0]}.{MIN_SLICER[1]} or later (Python "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+, for nnU-Net 2.6+); this is Slicer {slicer_version or 'unknown'} "
            f"with Python {python[0]}.{python[1]}.")


# ----- installing without replacing what Slicer ships ------------------------------------------------
def installed_versions() -> dict[str, str]:
    """Every installed distribution and its version (what a constraints file pins)."""
    from importlib.metadata import distributions
    out = {}
    for d in distributions():
        name = d.metadata.get("Name")
        if name and d.version:
            out[name] = d.version
    return out


def constraints_text(installed: dict[str, str]) -> str:
    """A pip constraints file that pins every installed distribution at its version: pip then
    adds what is missing and never upgrades or replaces a package Slicer (or the user) has —
    the selective install SlicerTotalSegmentator and SlicerNNUNet do by hand. A dependency that
    needs another version of one of them makes pip fail with a message, instead of breaking Slicer."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(installed.items(), key=lambda kv: kv[0].lower())
                   if _version_tuple(version))


def pip_arguments(requirements: list[str], constraints_file: str) -> list[str]:
    """``pip install`` arguments (after ``install``) for the missing requirements only."""
    return [*requirements, "-c", constraints_file]
