"""A painted segment as the region, on real MRML: a segment with two islands is written into a
real segmentation node, the smaller island is picked, and the job's ROI mask equals that
island voxel for voxel in the CT's geometry — also when the segmentation has its own
geometry (half the spacing, another extent). Empty and outside-the-CT segments are one line."""
from __future__ import annotations

import numpy as np
import pytest
import slicer

CT_SPACING = (1.5, 1.5, 3.0)
CT_ORIGIN = (-20.0, 10.0, 5.0)
CT_SHAPE = (12, 24, 24)                  # z, y, x


def ct_volume():
    node = slicer.util.addVolumeFromArray(np.full(CT_SHAPE, 40, np.int16), name="CT")
    node.SetSpacing(*CT_SPACING)
    node.SetOrigin(*CT_ORIGIN)
    return node


def paint_reference(fine: bool, shift_voxels=(3, 2, 1)):
    """The grid the segment is painted on: the CT's own, or half its spacing on a shifted
    extent whose voxels tile the CT's exactly (fine voxels 2i and 2i + 1 make CT voxel i)."""
    if not fine:
        return ct_volume(), 1, (0, 0, 0)
    spacing = tuple(s / 2 for s in CT_SPACING)
    sx, sy, sz = shift_voxels                                  # the fine grid starts inside the CT
    origin = tuple(o - s / 2 + k * s2 for o, s, s2, k in zip(CT_ORIGIN, spacing, CT_SPACING, (sx, sy, sz)))
    shape = tuple(2 * n - 2 * k for n, k in zip(CT_SHAPE, (sz, sy, sx)))
    node = slicer.util.addVolumeFromArray(np.zeros(shape, np.uint8), name="paint grid",
                                          nodeClassName="vtkMRMLLabelMapVolumeNode")
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    return node, 2, (sz, sy, sx)


def boxes_on_ct():
    """Two islands in CT voxels (z, y, x): a large and a small one."""
    large = (slice(4, 8), slice(6, 14), slice(6, 14))
    small = (slice(9, 11), slice(16, 19), slice(16, 19))
    return large, small


def paint(scene, grid, voxels: np.ndarray, name: str, seg=None):
    """A segment written into a (real) segmentation node from voxels on ``grid``'s geometry:
    the label map is imported as Slicer's Segment Editor or Import would."""
    labelmap = grid if grid.IsA("vtkMRMLLabelMapVolumeNode") else None
    if labelmap is None:
        labelmap = slicer.util.addVolumeFromArray(np.zeros_like(voxels), name="paint",
                                                  nodeClassName="vtkMRMLLabelMapVolumeNode")
        labelmap.SetSpacing(*grid.GetSpacing())
        labelmap.SetOrigin(*grid.GetOrigin())
    slicer.util.updateVolumeFromArray(labelmap, voxels.astype(np.uint8))
    seg = seg or scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "AI output")
    before = seg.GetSegmentation().GetNumberOfSegments()
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, seg)
    segment = seg.GetSegmentation().GetNthSegment(seg.GetSegmentation().GetNumberOfSegments() - 1)
    assert seg.GetSegmentation().GetNumberOfSegments() == before + 1
    segment.SetName(name)
    return seg


def painted(scale: int, shift) -> np.ndarray:
    shape_ct = np.array(CT_SHAPE)
    shape = tuple(scale * (shape_ct - np.array(shift)))
    arr = np.zeros(shape, np.uint8)
    for box in boxes_on_ct():
        arr[tuple(slice(scale * (b.start - k), scale * (b.stop - k)) for b, k in zip(box, shift))] = 1
    return arr


@pytest.mark.parametrize("fine", [False, True], ids=["ct geometry", "own geometry"])
def test_the_smaller_island_becomes_the_jobs_roi_mask_voxel_for_voxel(module, scene, tmp_path, fine):
    import SimpleITK as sitk

    from ShapSegExplainLib.panel.run_request import RunRequest, job_for
    ct = ct_volume()
    reference, scale, shift = paint_reference(fine)
    seg = paint(scene, reference, painted(scale, shift), "kidney left")
    segmentId = seg.GetSegmentation().GetNthSegmentID(0)
    logic = module.ShapSegExplainLogic()
    p = __import__("types").SimpleNamespace(inputVolume=ct, region=module.Region.SEGMENT, regionSegmentation=seg,
                                            regionSegmentId=segmentId, regionIsland=0, modelPath=module.DEMO_MODEL,
                                            targetClass="kidney_left", pointNode=None, roiNode=None)
    choices, problem = logic.islandChoices(p)
    assert problem is None and choices[0].startswith("All pieces (2,") and len(choices) == 3
    assert logic.whyCannotRun(p) is None
    p.regionIsland = 2                                              # the smaller piece
    path = logic.exportPiece(seg, segmentId, p.regionIsland, ct, tmp_path / "roi.nrrd")
    job = job_for(RunRequest(ct=str(tmp_path / "ct.nrrd"), model=str(module.DEMO_MODEL), target="kidney_left",
                             region="segment", roi_mask=path), tmp_path)
    assert job.roi_mask == path
    image = sitk.ReadImage(path)
    expected = np.zeros(CT_SHAPE, bool)
    expected[boxes_on_ct()[1]] = True
    assert np.array_equal(sitk.GetArrayFromImage(image) > 0, expected)
    assert np.allclose(image.GetSpacing(), CT_SPACING)
    lps_origin = (-CT_ORIGIN[0], -CT_ORIGIN[1], CT_ORIGIN[2])      # RAS in Slicer, LPS in the file
    assert np.allclose(image.GetOrigin(), lps_origin)
    assert logic.targetForSegment(seg, segmentId, ["kidney_left", "kidney_right", "spleen"]) == "kidney_left"
    # the same segment as the reference, its larger piece picked (Dice against one island)
    assert logic.pieceChoices(seg, segmentId, ct) == (choices, None)
    reference = sitk.ReadImage(logic.exportPiece(seg, segmentId, 1, ct, tmp_path / "reference.nrrd"))
    expected = np.zeros(CT_SHAPE, bool)
    expected[boxes_on_ct()[0]] = True
    assert np.array_equal(sitk.GetArrayFromImage(reference) > 0, expected)
    assert np.allclose(reference.GetOrigin(), lps_origin)
    # the anatomy path: whole segments as labels 1, 2, ... on the same grid
    anatomy, names = logic.exportSegments(seg, [segmentId], ct, tmp_path / "anatomy.nrrd")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(anatomy))
    assert names == {1: "kidney left"} and set(np.unique(labels)) == {0, 1}
    assert np.array_equal(labels > 0, (sitk.GetArrayFromImage(image) > 0) | expected)


def test_an_empty_or_outside_segment_disables_explain_with_one_line(module, scene):
    ct = ct_volume()
    logic = module.ShapSegExplainLogic()
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "painted")
    empty = seg.GetSegmentation().AddEmptySegment("nothing yet")
    assert seg.GetSegmentation().GetSegment(empty) is not None
    p = __import__("types").SimpleNamespace(inputVolume=ct, region=module.Region.SEGMENT, regionSegmentation=seg,
                                            regionSegmentId=empty, regionIsland=0, modelPath=module.DEMO_MODEL,
                                            targetClass="kidney_left", pointNode=None, roiNode=None)
    assert logic.whyCannotRun(p) == "The chosen segment is empty: paint it first."
    far = slicer.util.addVolumeFromArray(np.zeros((4, 4, 4), np.uint8), name="far away",
                                         nodeClassName="vtkMRMLLabelMapVolumeNode")
    far.SetOrigin(500.0, 500.0, 500.0)
    paint(scene, far, np.ones((4, 4, 4), np.uint8), "elsewhere", seg)
    outside = seg.GetSegmentation().GetNthSegmentID(seg.GetSegmentation().GetNumberOfSegments() - 1)
    p.regionSegmentId = outside
    assert logic.whyCannotRun(p) == "The chosen segment lies outside the CT."
    p.regionSegmentId = ""
    assert logic.whyCannotRun(p) == "Choose the segment to explain."
