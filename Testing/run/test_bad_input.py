"""Bad input: one-line error naming what is wrong, a machine code, non-zero CLI exit."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import call_cli, synthetic_ct
from ShapSegExplainLib.nnunet.case import prepare_case, read_ct
from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.nnunet.model import load_model



@pytest.fixture(scope="module")
def ct_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("ct") / "ct.nrrd"
    sitk.WriteImage(synthetic_ct((20, 36, 36), seed=3), str(f))
    return f


def _expect(code, fn, *a, **kw):
    with pytest.raises(ShapSegError) as e:
        fn(*a, **kw)
    assert e.value.code == code
    assert "\n" not in str(e.value)
    return str(e.value)


def test_model_folder_errors(tmp_path, model_dirs):
    assert "not found" in _expect("model_not_found", load_model, tmp_path / "nope")
    assert "not an nnU-Net" in _expect("not_a_model", load_model, tmp_path)
    msg = _expect("missing_checkpoint", load_model, model_dirs["one_fold"], folds=(3,), device="cpu")
    assert "fold_3" in msg and "available folds: [0]" in msg
    _expect("missing_checkpoint", load_model, model_dirs["one_fold"], checkpoint="checkpoint_best.pth",
            device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "plans.json").write_text("{}")
    (broken / "dataset.json").write_text("{}")
    (broken / "fold_0").mkdir()
    (broken / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    _expect("bad_model", load_model, broken, device="cpu")


def test_image_errors(tmp_path, model_dirs):
    model = load_model(model_dirs["one_fold"], device="cpu")
    four_d = sitk.JoinSeries([synthetic_ct((8, 10, 10)), synthetic_ct((8, 10, 10))])
    sitk.WriteImage(four_d, str(tmp_path / "4d.nrrd"))
    assert "4D" in _expect("bad_ct", read_ct, tmp_path / "4d.nrrd")
    mr = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 900, (8, 10, 10)).astype(np.float32))
    assert "Hounsfield" in _expect("bad_ct", prepare_case, mr, model)
    arr = sitk.GetArrayFromImage(synthetic_ct((8, 10, 10))).astype(np.float32)
    arr[2, 3, 4] = np.nan
    assert "NaN" in _expect("bad_ct", prepare_case, sitk.GetImageFromArray(arr), model)
    rgb = sitk.Compose([synthetic_ct((8, 10, 10))] * 3)
    assert "components" in _expect("bad_ct", prepare_case, rgb, model)
    assert "not found" in _expect("ct_not_found", read_ct, tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"junk")
    _expect("bad_ct", read_ct, tmp_path / "junk.nii.gz")


def test_unknown_target(model_dirs):
    model = load_model(model_dirs["one_fold"], device="cpu")
    assert "liver, kidney" in _expect("unknown_target", model.target_label, "pancreas")
    _expect("unknown_target", model.target_label, 7)
    _expect("unknown_target", model.target_label, "background")
    assert model.target_label("kidney") == 2 and model.target_label("1") == 1


@pytest.mark.parametrize("case_args,needle", [
    (["--model", "MISSING"], "model folder not found"),
    (["--target", "pancreas"], "unknown target 'pancreas'"),
    (["--roi-box", "200,200,200,210,210,210"], "outside the CT"),
    (["--ct", "MISSING.nii.gz"], "CT not found"),
    (["--roi-box", "1,2,3"], "needs 6 comma-separated numbers"),
])
def test_cli_bad_input_one_line_and_nonzero_exit(ct_file, model_dirs, case_args, needle):
    args = {"--ct": ct_file, "--model": model_dirs["one_fold"], "--target": "liver",
            "--roi-box": "10,10,5,20,20,10"}
    for k, v in zip(case_args[::2], case_args[1::2]):
        args[k] = v
    flat = [x for kv in args.items() for x in kv]
    r = call_cli("inspect", *flat, "--device", "cpu")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("shapseg: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_inspect_reports_tiles_and_target(ct_file, model_dirs):
    r = call_cli("inspect", "--ct", ct_file, "--model", model_dirs["one_fold"], "--target", "liver",
             "--roi-box", "10,10,5,20,20,10", "--device", "cpu", "--no-mirroring", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["roi_voxels"] == 11 * 11 * 6
    assert 1 <= len(rep["roi_tiles"]) <= rep["tiles_whole_image"]
    assert rep["stats"]["tile_forwards"] == len(rep["roi_tiles"])
    assert 0 <= rep["target_voxels_in_roi"] <= rep["roi_voxels"]
