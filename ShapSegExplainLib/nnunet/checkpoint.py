"""Reading an nnU-Net checkpoint without running code from it.

A results folder is something users copy around; ``torch.load(weights_only=False)`` (what
nnU-Net's own loader does) unpickles arbitrary objects, so a crafted ``checkpoint_final.pth``
would run code when the folder is picked. Here a checkpoint is read with
``weights_only=True`` and an allow-list of exactly what nnU-Net checkpoints hold besides
tensors, dicts, lists and numbers: NumPy scalars and their dtypes (the training log and
``_best_ema``), under NumPy 1's and NumPy 2's module names. Anything else is refused with one
line naming it, unless the user trusts the file (``--trust-checkpoint``).
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import ShapSegError


def _safe_globals() -> list:
    scalar = np._core.multiarray.scalar
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes)
              if n.endswith("DType") and n.startswith(("Float", "Int", "UInt", "Bool", "Complex"))]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


SAFE_GLOBALS = _safe_globals()
# how torch names what it refused (an unknown global, a blocked module's function, a non-allowed class)
_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL (\S+)|unsupported GLOBAL (\S+)|but got <class '([^']+)'>")


def read_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """The checkpoint's dict, read on the CPU; ``trust`` unpickles everything (the user's call)."""
    path = Path(path)
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _UNSUPPORTED.search(str(e))
        if not found:                   # not a refusal: a damaged file
            raise ShapSegError(f"cannot read the checkpoint {path}: {_first_line(e)}", "bad_model") from None
        what = next(g for g in found.groups() if g)
        raise ShapSegError(f"{path} holds '{what}', which nnU-Net checkpoints do not; loading it could run code. "
                           "If you trust where this model comes from, load it with --trust-checkpoint",
                           "unsafe_checkpoint") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ShapSegError(f"cannot read the checkpoint {path}: {_first_line(e)}", "bad_model") from None
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise ShapSegError(f"{path} is not an nnU-Net checkpoint (no network_weights)", "bad_model")
    return checkpoint


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
