"""The Python API's bad input: one ``ShapSegError`` with the command line's message, before any
model is loaded, and nothing left behind (the run itself: Testing/docs/test_examples.py)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ShapSegExplainLib import Explanation, ShapSegError, explain


def ct_image() -> sitk.Image:
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("shapseg-*")}


def test_an_unknown_setting_is_refused_by_name():
    with pytest.raises(ShapSegError, match="unknown setting.*budgett"):
        explain("ct.nii.gz", "model", "kidney_left", roi_mask="roi.nii.gz", budgett=10)


def test_an_roi_array_of_another_shape_is_refused():
    with pytest.raises(ShapSegError, match=r"shape \(4, 5\).*\(4, 5, 6\)"):
        explain(ct_image(), "model", "kidney_left", roi=np.ones((4, 5), bool))


def test_a_bad_job_leaves_no_temporary_folder():
    before = temp_folders()
    with pytest.raises(ShapSegError, match="players"):
        explain(ct_image(), "model", "kidney_left", roi=np.ones((4, 5, 6), bool), players="voxels")
    assert temp_folders() == before


def test_loading_a_folder_without_a_result_says_so(tmp_path):
    with pytest.raises(ShapSegError, match="explanation.json"):
        Explanation.load(tmp_path)
