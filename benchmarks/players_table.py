"""The players table on the real CT: every abstraction for one ROI at the left kidney.

A random-weight nnU-Net model (3 mm, patch 32x64x64; players do not depend on the
weights when the anatomy comes from a file) and TotalSegmentator's map as anatomy. Run:
  python benchmarks/players_table.py [--roi-box 32,35,7,36,39,11] [--json]
"""
from __future__ import annotations

import sys

import argparse
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))   # test fixtures (games, model folders)

from ShapSegExplainLib.cli import main as shapseg
from fixtures.model_folder import ModelSpec, write_model_folder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg-example"
SPEC = ModelSpec(labels={"background": 0, "kidney_left": 1, "liver": 2, "spleen": 3}, patch_size=(32, 64, 64),
                 spacing=(3.0, 3.0, 3.0), features=(4, 8, 16, 32), seed=7)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roi-box", default="32,35,7,36,39,11")
    ap.add_argument("--json", action="store_true")
    args, rest = ap.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = write_model_folder(Path(tmp) / "model", SPEC)
        return shapseg(["players", "--ct", str(DATA / "ct.nii.gz"), "--model", str(model), "--target", "kidney_left",
                        "--roi-box", args.roi_box, "--anatomy", str(DATA / "seg_total.nii.gz"),
                        "--anatomy-labels", str(DATA / "labels_total.json"), "--device", "cpu", "--compare",
                        *(["--json"] if args.json else []), *rest])


if __name__ == "__main__":
    raise SystemExit(main())
