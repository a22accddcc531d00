"""From the main suite, what runs in ``.venv-mrml`` (``make venv`` builds it: Slicer 5.10+'s
Python 3.12, slicer-core, no torch): the module's real-MRML tests (``Testing/mrml``; there
``slicer`` is Slicer's, not shap's) and the torch-free panel layer's tests on that Python."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-mrml" / "bin" / "python"


def run_there(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: run 'make venv' (it builds the slicer-core environment)")
    r = subprocess.run([str(PYTHON), "-m", "pytest", *args, "-p", "no:cacheprovider", "-q", "-rA"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    print(r.stdout[-6000:])
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    skipped = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert " passed" in r.stdout and all("../shared" in ln for ln in skipped), skipped   # shared_data.needs_shared
    return r


def test_the_module_on_real_mrml_classes():
    run_there("Testing/mrml", "-o", "python_files=mrml_*.py", "--confcutdir", "Testing/mrml")


def test_the_panel_layer_on_slicers_python_without_torch():
    """The torch-free parts the module imports, on Slicer's Python (3.12 where available),
    where torch is absent: only the two tests that start a real worker are left out."""
    import os
    r = run_there("Testing/panel", "--confcutdir", "Testing/panel", "-k", "not real_worker and not parent_dies",
                  env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'Testing'}"})
    version = subprocess.run([str(PYTHON), "-c", "import sys; print(sys.version_info[:2] >= (3, 10))"],
                             capture_output=True, text=True).stdout.strip()
    assert version == "True" and "2 deselected" in r.stdout
