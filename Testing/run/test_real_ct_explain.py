"""``shapseg explain`` on the real CT with TotalSegmentator's segmentation as the anatomy map,
once per abstraction (slow). The random-weight model runs on a 6 mm grid, so the 3 mm CT and
its 3 mm labels are resampled down to the network and every output back up to the CT; the
players themselves are tested on 3 mm and anisotropic grids in test_real_ct_players, and
mirroring's exactness in test_exactness, so this model runs without it."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import call_cli
from fixtures.model_folder import ModelSpec, write_model_folder
from ShapSegExplainLib.choices import PLAYERS

SPEC = ModelSpec(patch_size=(16, 32, 32), spacing=(6.0, 6.0, 6.0), features=(4, 8, 16), seed=7,
                 labels={"background": 0, "kidney_left": 1, "spleen": 2})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_model_folder(tmp_path_factory.mktemp("m") / "iso_3mm", SPEC)


@pytest.mark.slow
@pytest.mark.parametrize("abstraction", PLAYERS)
def test_explain_real_ct_with_totalsegmentator_anatomy(shared_ct, model_dir, tmp_path, abstraction):
    import slicerio
    out = tmp_path / "out"
    r = call_cli("explain", "--ct", shared_ct / "ct.nii.gz", "--model", model_dir, "--target", "kidney_left",
                "--roi-box", "32,35,7,36,39,11", "--players", abstraction,
                "--anatomy", shared_ct / "seg_total.nii.gz", "--anatomy-labels", shared_ct / "labels_total.json",
                "--value", "soft_dice", "--budget", "200", "--faithfulness-steps", "4", "--device", "cpu", "--no-mirroring",
                 "--out", out)
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
