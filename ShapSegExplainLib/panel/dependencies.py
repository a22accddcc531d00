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
    ("slicerio", "slicerio>=1.4"),
    ("matplotlib", "matplotlib>=3.8"),
    ("tqdm", "tqdm>=4.60"),
    ("psutil", "psutil>=5.9"),
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
