"""ROIs from a mask, a box and a clicked point; CT <-> network grid mapping."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from helpers import reference_logits, synthetic_ct
from ShapSegExplainLib.nnunet.case import prepare_case
from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.nnunet.model import load_model
from ShapSegExplainLib.nnunet.roi import UnperturbedPrediction, roi_from_box, roi_from_mask, roi_from_point


@pytest.fixture(scope="module")
def plain(model_dirs):
    # batch size 1: nnU-Net's own calls, so labels compare bit for bit with the reference run
    model = load_model(model_dirs["one_fold"], mirroring=False, device="cpu", batch_size=1)
    return model, prepare_case(synthetic_ct((20, 40, 44), seed=11), model)


@pytest.fixture(scope="module")
def aniso(model_dirs):
    model = load_model(model_dirs["aniso"], mirroring=False, device="cpu", batch_size=4)
    return model, prepare_case(synthetic_ct((14, 40, 30), (1.0, 1.0, 2.5), seed=12), model)


def test_mask_and_box_land_on_the_right_network_voxels(plain):
    model, case = plain                      # same spacing, no transpose: network axes = array axes
    mask = np.zeros(sitk.GetArrayViewFromImage(case.ct).shape, np.uint8)
    mask[5:9, 10:20, 12:30] = 1
    roi = roi_from_mask(case, mask)
    assert np.array_equal(roi, mask.astype(bool))
    box = roi_from_box(case, (12, 10, 5), (29, 19, 8))         # i, j, k inclusive
    assert np.array_equal(box, roi)
    lo = case.ct.TransformIndexToPhysicalPoint((12, 10, 5))
    hi = case.ct.TransformIndexToPhysicalPoint((29, 19, 8))
    ras = lambda p: (-p[0], -p[1], p[2])                        # noqa: E731
    assert np.array_equal(roi_from_box(case, ras(lo), ras(hi), space="ras"), roi)


def test_anisotropic_transposed_model_maps_masks_both_ways(aniso):
    model, case = aniso
    arr_shape = sitk.GetArrayViewFromImage(case.ct).shape
    assert case.shape != arr_shape                              # resampled and transposed
    z, y, x = np.indices(arr_shape)
    ball = ((z - 7) * 2.5) ** 2 + (y - 20) ** 2 + (x - 14) ** 2 < 9 ** 2
    net = roi_from_mask(case, ball.astype(np.uint8))
    vol_ct = ball.sum() * 2.5 * 1.0 * 1.0
    vol_net = net.sum() * np.prod(case.spacing)
    assert abs(vol_net - vol_ct) / vol_ct < 0.15
    back = case.labels_to_ct(net.astype(np.int32)) > 0
    dice = 2 * (back & ball).sum() / (back.sum() + ball.sum())
    assert dice > 0.85
    idx = case.index_to_network((14, 20, 7))                    # the ball's centre, i, j, k
    assert net[idx]


def test_point_gives_the_connected_component_of_the_prediction(plain):
    model, case = plain
    labels = model.label_manager.convert_logits_to_segmentation(reference_logits(case)).numpy()
    target = 1
    comps, n = ndimage.label(labels == target)
    assert n >= 1
    sizes = ndimage.sum(np.ones_like(comps), comps, range(1, n + 1))
    biggest = int(np.argmax(sizes)) + 1
    point = np.argwhere(comps == biggest)[0]
    roi = roi_from_point(case, (point[2], point[1], point[0]), target, snap_mm=0)
    assert np.array_equal(roi, comps == biggest)


def test_point_grows_only_as_far_as_needed(plain):
    model, case = plain
    pred = UnperturbedPrediction(case)
    labels = model.label_manager.convert_logits_to_segmentation(reference_logits(case)).numpy()
    comps, n = ndimage.label(labels == 2)
    sizes = ndimage.sum(np.ones_like(comps), comps, range(1, n + 1))
    small = int(np.argmin(sizes)) + 1
    point = np.argwhere(comps == small)[0]
    roi = roi_from_point(case, (point[2], point[1], point[0]), 2, snap_mm=0, predictor=pred)
    assert np.array_equal(roi, comps == small)
    whole = len(pred.grid)
    assert pred.counters.tile_forwards <= whole


def test_roi_errors(plain):
    model, case = plain
    shape = sitk.GetArrayViewFromImage(case.ct).shape
    with pytest.raises(ShapSegError, match="empty") as e:
        roi_from_mask(case, np.zeros(shape, np.uint8))
    assert e.value.code == "empty_roi"
    with pytest.raises(ShapSegError, match="outside") as e:
        roi_from_box(case, (100, 100, 100), (120, 120, 120))
    assert e.value.code == "roi_outside"
    with pytest.raises(ShapSegError, match="outside"):
        roi_from_point(case, (-5, 3, 2), 1)
    other = sitk.GetImageFromArray(np.ones(shape, np.uint8))
    other.SetSpacing((2.0, 2.0, 2.0))
    with pytest.raises(ShapSegError, match="spacing") as e:
        roi_from_mask(case, other)
    assert e.value.code == "bad_mask"
    with pytest.raises(ShapSegError, match="differs"):
        roi_from_mask(case, np.ones((3, 3, 3), np.uint8))


def test_point_where_the_target_is_absent_is_a_clear_error(plain):
    model, case = plain
    labels = model.label_manager.convert_logits_to_segmentation(reference_logits(case)).numpy()
    far = ndimage.distance_transform_edt(labels != 1, sampling=case.spacing)
    p = np.unravel_index(np.argmax(far), far.shape)
    assert far[p] > 3
    with pytest.raises(ShapSegError, match="does not predict") as e:
        roi_from_point(case, (p[2], p[1], p[0]), 1, snap_mm=1.0)
    assert e.value.code == "target_absent"
