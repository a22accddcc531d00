"""The embedded default: the shipped demo model on phantoms with a mimic (slow).

The planted cause must come out on top: the player holding most of the mimic carries the
largest positive φ for the (soft) false-positive kidney volume, on a seed that is not the
demo's."""
import json

import numpy as np
import pytest

from helpers import run_cli
from ShapSegExplainLib.demo import DEMO_MODEL
from ShapSegExplainLib.demo.demo_case import DEMO_SEED, mimic_player_shares, write_demo_case

TEST_SEED = 12
assert TEST_SEED != DEMO_SEED


def players_in_ct(out) -> np.ndarray:
    import slicerio
    seg = slicerio.read_segmentation(str(out / "players.seg.nrrd"))
    return seg["voxels"].transpose(2, 1, 0)          # player id + 1 per CT voxel, SimpleITK order


def assert_points_at_mimic(expl: dict, out, mimic: np.ndarray) -> None:
    phi = np.array([p["phi"] for p in expl["players"]])
    shares = mimic_player_shares(players_in_ct(out), mimic, len(phi))
    host = int(np.argmax(shares))
    assert shares[host] >= 0.4, shares                       # one player holds most of the mimic
    assert phi[host] > 0 and int(np.argmax(phi)) == host, (expl["players"][host]["name"], phi.round(3))


@pytest.mark.slow
def test_demo_model_is_shipped_and_loads():
    from ShapSegExplainLib.nnunet.model import load_model
    model = load_model(DEMO_MODEL, device="cpu")
    assert "kidney_left" in model.labels and (DEMO_MODEL / "MODEL_CARD.md").is_file()


@pytest.mark.slow
def test_demo_command_as_a_new_user_runs_it(tmp_path):
    """``shapseg demo`` in a fresh process, on a phantom seed that is not the demo's (the
    Slicer run path test explains the demo's own seed), with the self-test's budget."""
    out = tmp_path / "shapseg_demo"
    r = run_cli("demo", "--out", out, "--seed", TEST_SEED, "--budget", 60, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "top drivers" in r.stdout and str(out) in r.stdout
    for name in ("players.seg.nrrd", "attribution.nrrd", "roi.seg.nrrd", "attributions.csv", "explanation.json",
                 "report.png", "phantom_ct.nii.gz"):
        assert (out / name).is_file(), name
    expl = json.loads((out / "explanation.json").read_text())
    case = write_demo_case(tmp_path / "inputs", TEST_SEED)   # the same phantom, to know where the mimic is
    mimic_ml = case.phantom.mimic.sum() * np.prod(case.phantom.ct.GetSpacing()) / 1000
    assert expl["full_value"] > 0.3 * mimic_ml               # the model does call the mimic kidney
    assert_points_at_mimic(expl, out, case.phantom.mimic)
