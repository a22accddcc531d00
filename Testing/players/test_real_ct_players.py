"""Players on the real CT with its TotalSegmentator segmentation (slow): every abstraction,
isotropic (3 mm) and anisotropic, transposed (4 x 1.2 x 1.2 mm) network grids."""
import numpy as np
import pytest

from players_helpers import (assert_connected, assert_nearest_lattice, assert_partition, assert_same,
                             interior_cell_volumes, purities)
from ShapSegExplainLib.choices import PLAYERS
from ShapSegExplainLib.players.lattice import fcc_cell_volume_mm3
from ShapSegExplainLib.nnunet.case import prepare_case
from ShapSegExplainLib.nnunet.evaluator import plan_roi
from ShapSegExplainLib.nnunet.model import load_model
from fixtures.model_folder import ModelSpec, write_model_folder
from ShapSegExplainLib.players.stats import map_summary, player_table
from ShapSegExplainLib.players.maps import PlayerSettings, players_for_case
from ShapSegExplainLib.nnunet.roi import roi_from_box

SPECS = {
    "iso_3mm": ModelSpec(patch_size=(32, 64, 64), spacing=(3.0, 3.0, 3.0), features=(4, 8, 16, 32), seed=7),
    "aniso": ModelSpec(patch_size=(16, 64, 64), spacing=(4.0, 1.2, 1.2), features=(4, 8, 16),
                       transpose_forward=(0, 2, 1), seed=8),
}


@pytest.fixture(scope="module", params=sorted(SPECS))
def real_case(request, shared_ct, tmp_path_factory):
    folder = write_model_folder(tmp_path_factory.mktemp("m") / request.param, SPECS[request.param])
    model = load_model(folder, device="cpu")
    case = prepare_case(shared_ct / "ct.nii.gz", model)
    roi = roi_from_box(case, (32, 35, 7), (36, 39, 11))   # 3.4 mL at the left kidney
    return {"case": case, "plan": plan_roi(model, case, roi), "dir": shared_ct}


def _players(rc, abstraction, **kw):
    settings = PlayerSettings(abstraction=abstraction, **kw)
    return players_for_case(rc["case"], rc["plan"], settings, rc["dir"] / "seg_total.nii.gz",
                            rc["dir"] / "labels_total.json")


@pytest.mark.slow
@pytest.mark.parametrize("abstraction", PLAYERS)
def test_real_ct_players_are_partitions(real_case, abstraction):
    pmap = _players(real_case, abstraction)
    assert_partition(pmap, real_case["plan"].image_in_crop)
    if abstraction != "organ":
        assert_connected(pmap)
    if abstraction in ("organ", "hybrid", "slic"):
        assert (purities(pmap) == 1.0).all()
    assert_same(pmap, _players(real_case, abstraction))
    s = map_summary(pmap, real_case["plan"], real_case["case"].spacing)
    assert 3 <= s["players"] <= 400
    if abstraction != "organ":
        assert 10 <= s["support_players"], s
    organs = {p.organ for p in pmap.players}
    assert "kidney_left" in organs


@pytest.mark.slow
def test_real_ct_fcc_cells_follow_the_lattice(real_case):
    pmap = _players(real_case, "fcc", min_size_ml=0.0)
    assert_nearest_lattice(pmap, real_case["case"].spacing, sample=20000)
    big = _players(real_case, "fcc", min_size_ml=0.0, spacing_mm=15.0, margin_mm=45.0)
    rel = interior_cell_volumes(big, real_case["case"].spacing) / fcc_cell_volume_mm3(15.0)
    assert len(rel) >= 5
    # 3 mm voxels, about 90 per cell: single cells within 25 %, the mean within 3 %
    assert abs(rel.mean() - 1) < 0.03 and np.abs(rel - 1).max() < 0.25, rel
    rows = player_table(pmap, real_case["plan"], real_case["case"].spacing, real_case["case"].network_to_ras)
    # the ROI (at the left kidney) is where the centroids are: within the support's reach
    roi_rows = [r for r in rows if r["roi_voxels"] > 0]
    assert roi_rows and all(r["kind"] == "fcc" for r in roi_rows)
