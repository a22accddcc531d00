"""A segment as the region, without Slicer: pieces and their volumes, the picked piece, the
one-line problems, and segment name / terminology -> the model's class (TotalSegmentator's
and the demo model's names; no match, or an ambiguous one, is None)."""
import json
from pathlib import Path

import numpy as np
import pytest

from ShapSegExplainLib.errors import ShapSegError
from shared_data import TOTALSEG, needs_shared
from ShapSegExplainLib.panel.run_request import RunRequest, job_for
from ShapSegExplainLib.panel.segment_region import (ALL, island_choices, islands, pick, region_problem,
                                                    target_for_segment, terminology_words)

ROOT = Path(__file__).resolve().parents[2]
TOTALSEG_LABELS = TOTALSEG / "labels_total.json"


def two_islands():
    mask = np.zeros((10, 20, 20), bool)
    mask[2:6, 2:10, 2:10] = True       # 256 voxels: piece 1
    mask[7:9, 14:17, 14:17] = True     # 18 voxels: piece 2
    return mask


def test_pieces_largest_first_with_volumes_and_the_picked_one():
    mask = two_islands()
    found = islands(mask, (1.5, 1.5, 3.0))
    assert [(i.number, i.voxels) for i in found] == [(1, 256), (2, 18)]
    assert found[1].ml == pytest.approx(18 * 6.75 / 1000)
    assert island_choices(found) == ["All pieces (2, 1.85 mL)", "Piece 1: 1.73 mL", "Piece 2: 0.121 mL"]
    small = pick(mask, 2)
    assert small.sum() == 18 and small[7:9, 14:17, 14:17].all()
    assert pick(mask, ALL).sum() == 274 and pick(mask, 1).sum() == 256
    with pytest.raises(ShapSegError, match="2 pieces; piece 3"):
        pick(mask, 3)
    one = islands(pick(mask, 1), (1, 1, 1))
    assert island_choices(one) == ["The whole segment (0.256 mL)"]


def test_the_point_region_and_the_segment_region_share_one_definition_of_a_piece():
    """Face connectivity for both: two cubes touching only at an edge are two pieces."""
    from ShapSegExplainLib.components import piece_at, pieces
    mask = np.zeros((6, 6, 6), bool)
    mask[0:2, 0:2, 0:2] = True
    mask[2:4, 2:4, 0:2] = True          # shares an edge (not a face) with the first
    labels, sizes = pieces(mask)
    assert sizes.tolist() == [8, 8] and len(islands(mask, (1, 1, 1))) == 2
    assert piece_at(mask, (0, 0, 0)).sum() == 8
    import ast                      # read, not imported: roi.py needs torch, this test runs without it too
    tree = ast.parse((ROOT / "ShapSegExplainLib" / "nnunet" / "roi.py").read_text())
    point = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "roi_from_point")
    calls = {c.func.id for c in ast.walk(point) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    assert "piece_at" in calls and "ndimage" not in ast.unparse(tree)


def test_problems_are_one_line():
    assert region_problem(np.zeros((3, 3, 3), bool), 0) == "The chosen segment is empty: paint it first."
    assert region_problem(np.zeros((3, 3, 3), bool), 12) == "The chosen segment lies outside the CT."
    assert region_problem(two_islands(), 274) is None


def test_a_segment_region_becomes_the_jobs_roi_mask(tmp_path):
    request = RunRequest(ct="ct.nrrd", model=str(ROOT / "ShapSegExplainLib" / "demo" / "model"),
                         target="kidney_left", region="segment", roi_mask=str(tmp_path / "roi.nrrd"))
    job = job_for(request, tmp_path)
    assert job.roi_mask == str(tmp_path / "roi.nrrd") and job.roi_kind() == "roi_mask"
    with pytest.raises(ShapSegError, match="choose the segment"):
        job_for(RunRequest(ct="ct.nrrd", model="m", target="liver", region="segment"), tmp_path)


def demo_classes():
    labels = json.loads((ROOT / "ShapSegExplainLib" / "demo" / "model" / "dataset.json").read_text())["labels"]
    return [k for k in labels if k != "background"]


def test_segment_names_find_the_demo_models_classes():
    classes = demo_classes()
    for name, expected in [("kidney_left", "kidney_left"), ("Left kidney", "kidney_left"),
                           ("kidney left (truth)", "kidney_left"), ("Kidney (right)", "kidney_right"),
                           ("Spleen", "spleen"), ("liver", "liver"), ("Vertebra", "vertebra")]:
        assert target_for_segment(name, None, classes) == expected, name
    assert target_for_segment("Segment_1", None, classes) is None            # nothing matches: the user picks
    assert target_for_segment("tumour", None, classes) is None
    assert target_for_segment("kidney", None, classes) is None                # left or right: not a guess


def test_segment_names_and_terminology_find_totalsegmentators_classes():
    classes = list(json.loads(needs_shared(TOTALSEG_LABELS).read_text()).values())
    assert len(classes) > 100
    for c in classes:                     # TotalSegmentator's own names, and as Slicer displays them (spaces)
        assert target_for_segment(c, None, classes) == c
        assert target_for_segment(c.replace("_", " ").title(), None, classes) == c
    assert target_for_segment("left kidney", None, classes) == "kidney_left"
    assert target_for_segment("L1 vertebra", None, classes) == "vertebrae_L1"
    # a segment named by the user but carrying Slicer's terminology (type Kidney, modifier Left)
    entry = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~"
             "SCT^64033007^Kidney~SCT^7771000^Left~Anatomic codes - DICOM master list~^^~^^")
    assert terminology_words(entry) == "Kidney Left"
    assert target_for_segment("Segment_1", entry, classes) == "kidney_left"
    assert target_for_segment("Segment_1", None, classes) is None
