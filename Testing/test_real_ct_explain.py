"""``shapseg explain`` on the real CT with TotalSegmentator's segmentation as the anatomy map,
once per abstraction, started as a user would (slow; a small random-weight 3 mm model)."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import run_cli
from ShapSegExplainLib.model_folder import ModelSpec, write_model_folder
from ShapSegExplainLib.players import ABSTRACTIONS

SPEC = ModelSpec(patch_size=(32, 64, 64), spacing=(3.0, 3.0, 3.0), features=(4, 8, 16, 32), seed=7,
                 labels={"background": 0, "kidney_left": 1, "spleen": 2})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model_folder(tmp_path_factory.mktemp("m") / "iso_3mm", SPEC)


@pytest.mark.slow
@pytest.mark.parametrize("abstraction", ABSTRACTIONS)
def test_explain_real_ct_with_totalsegmentator_anatomy(shared_ct, model_dir, tmp_path, abstraction):
    import slicerio
    out = tmp_path / "out"
    r = run_cli("explain", "--ct", shared_ct / "ct.nii.gz", "--model", model_dir, "--target", "kidney_left",
                "--roi-box", "32,35,7,36,39,11", "--players", abstraction,
                "--anatomy", shared_ct / "seg_total.nii.gz", "--anatomy-labels", shared_ct / "labels_total.json",
                "--value", "soft_dice", "--budget", "200", "--faithfulness-steps", "4", "--device", "cpu",
                "--out", out, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    expl = json.loads((out / "explanation.json").read_text())
    phi = np.array([p["phi"] for p in expl["players"]])
    assert abs(phi.sum() - (expl["full_value"] - expl["base_value"])) < 1e-9
    assert "kidney_left" in {p["organ"] for p in expl["players"]}
    assert expl["players_summary"]["anatomy_source"].endswith("seg_total.nii.gz")
    ct = sitk.ReadImage(str(shared_ct / "ct.nii.gz"))
    seg = slicerio.read_segmentation(str(out / "players.seg.nrrd"))
    assert seg["voxels"].shape == ct.GetSize() and len(seg["segments"]) == len(phi)
    attribution = sitk.ReadImage(str(out / "attribution.nrrd"))
    assert attribution.GetSize() == ct.GetSize()
    assert np.allclose(attribution.GetOrigin(), ct.GetOrigin()) and np.allclose(attribution.GetDirection(),
                                                                                 ct.GetDirection())
    assert (out / "report.png").stat().st_size > 20000
