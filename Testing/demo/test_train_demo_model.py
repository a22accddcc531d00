"""The demo-model recipe runs nnU-Net's own planning, preprocessing and trainer end to end (slow)."""
import subprocess
import sys
from pathlib import Path

import pytest

from ShapSegExplainLib.nnunet.model import load_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_demo_model.py"


@pytest.mark.slow
def test_recipe_trains_a_model_that_loads(tmp_path):
    out = tmp_path / "model"
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--cases", "5", "--spacing", "6",
                        "--epochs", "1", "--iterations", "2", "--patch", "16", "32", "32",
                        "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not (tmp_path / "model.partial").exists()
    model = load_model(out, device="cpu")                 # nnU-Net finds nnUNetTrainer_1epoch by name
    assert model.patch_size == (16, 32, 32)
    assert set(model.dataset_json["labels"]) >= {"liver", "kidney_left", "kidney_right", "spleen"}
