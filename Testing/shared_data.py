"""The real data beside a checkout (``../shared``: the CT, its labels, the trained models) and
the rule for tests that need it. Torch-free: the panel tests import it on Slicer's Python."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOTALSEG = SHARED / "data" / "totalseg-example"
ABDO7 = SHARED / "models" / "abdo7-small"
REQUIRE_SHARED = "SHAPSEG_REQUIRE_SHARED"     # .ci/run sets it: there a missing ../shared fails, never skips


def needs_shared(path: Path) -> Path:
    """``path`` under ``../shared``. A clone on its own skips what needs it, with the reason;
    with ``SHAPSEG_REQUIRE_SHARED=1`` (CI) a missing file fails the test instead."""
    path = Path(path)
    if not path.exists():
        why = f"{path} is not present (../shared: the real CT and models beside the checkout)"
        if os.environ.get(REQUIRE_SHARED) == "1":
            pytest.fail(f"{why}; {REQUIRE_SHARED}=1 requires it")
        pytest.skip(why)
    return path
