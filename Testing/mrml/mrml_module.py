"""The module's Logic and observers against real MRML classes (slicer-core): placing a point
or a box enables Explain, ROI bounds, the results table (also without the 5.8+ header call),
players.seg.nrrd read into a real segmentation node with the overlay's display rules applied,
a result that survives a saved and reloaded scene without its folder, and a scene bundle (.mrb)
that reopens with CT, region, players and table."""
from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
import slicer
from conftest import new_scene

def params(module, **kw):
    base = dict(inputVolume=slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT"),
                modelPath=module.DEMO_MODEL, targetClass="kidney_left", region=module.Region.POINT,
                pointNode=None, roiNode=None)
    base.update(kw)
    return types.SimpleNamespace(**base)


def observing_widget(module):
    """The widget's own observer code (``observeMarkups`` / ``onMarkupsModified``) on the real
    ``VTKObservationMixin``; only the Apply button is a recorder (it is Qt)."""
    w = module.ShapSegExplainWidget.__new__(module.ShapSegExplainWidget)
    slicer.util.VTKObservationMixin.__init__(w)
    w._observedMarkups = []
    w.applyUpdates = []
    w.updateApplyButton = lambda: w.applyUpdates.append(1)
    return w


def test_placing_a_point_enables_explain_through_the_widgets_observers(module, scene):
    logic = module.ShapSegExplainLogic()
    point = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "finding")
    p = params(module, pointNode=point)
    assert logic.whyCannotRun(p) == "Place a point on the finding."
    # what today's Slicer sends when a point is placed: no ModifiedEvent (the defect observed only it)
    modified = []
    import vtk
    tag = point.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda c, e: modified.append(e))
    w = observing_widget(module)
    w.observeMarkups([point, None])
    point.AddControlPoint([10.0, 20.0, 30.0])
    assert modified == [] and w.applyUpdates, "placing a point must reach updateApplyButton"
    assert logic.whyCannotRun(p) is None
    n = len(w.applyUpdates)
    point.SetNthControlPointPosition(0, [11.0, 21.0, 31.0])        # moved
    assert len(w.applyUpdates) > n
    assert logic.regionOf(p) == ([11.0, 21.0, 31.0], None)
    n = len(w.applyUpdates)
    point.RemoveAllControlPoints()                                  # removed: Explain disabled again
    assert len(w.applyUpdates) > n and logic.whyCannotRun(p) == "Place a point on the finding."
    point.RemoveObserver(tag)
    # observers follow the chosen node: the old one is released
    other = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "other")
    w.observeMarkups([other])
    n = len(w.applyUpdates)
    point.AddControlPoint([0.0, 0.0, 0.0])
    assert len(w.applyUpdates) == n
    other.AddControlPoint([0.0, 0.0, 0.0])
    assert len(w.applyUpdates) > n


def test_a_box_enables_explain_and_gives_its_ras_bounds(module, scene):
    logic = module.ShapSegExplainLogic()
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    p = params(module, region=module.Region.BOX, roiNode=roi)
    assert logic.whyCannotRun(p) == "Place a box (ROI) around the region."
    w = observing_widget(module)
    w.observeMarkups([None, roi])
    roi.SetXYZ(10.0, -20.0, 30.0)
    roi.SetRadiusXYZ(5.0, 6.0, 7.0)
    assert w.applyUpdates and logic.whyCannotRun(p) is None
    point, bounds = logic.regionOf(p)
    assert point is None and np.allclose(bounds, [5, 15, -26, -14, 23, 37])
    from ShapSegExplainLib.panel.run_request import box_from_bounds
    assert np.allclose(box_from_bounds(bounds), [5, -26, 23, 15, -14, 37])


def explanation(n=12):
    rng = np.random.default_rng(3)
    phi = rng.normal(0, 0.1, n)
    phi[:3] = [0.8, -0.5, 0.3]
    players = [{"id": i, "name": f"kidney_left.{i}", "kind": "context" if i == n - 1 else "hybrid",
                "organ": "kidney_left", "voxels": 10, "ml": 1.0 + i, "phi": float(phi[i]),
                "se": 0.01 if i % 2 else 0.2, "rank": 0, "centroid_ras": [float(i), 0.0, 0.0]} for i in range(n)]
    order = np.argsort(-phi, kind="stable")
    for r, i in enumerate(order, start=1):
        players[i]["rank"] = r
    return {"players": players, "value": {"name": "soft_dice", "normalized": False, "unit": ""},
            "target": {"name": "kidney_left"}, "full_value": float(phi.sum()), "base_value": 0.0,
            "shapley": {"exact": False, "convergence_ratio": 0.05, "n_evaluations": 90, "history": [{"ratio": 1}]},
            "stats": {"tile_forwards": 300, "seconds": 12.0}, "faithfulness": None}


class TableWithoutHeaderCall:
    """A 5.6 table node: everything of the real node but ``SetUseColumnTitleAsColumnHeader``."""
    def __init__(self, node):
        self.node = node

    def __getattr__(self, name):
        if name == "SetUseColumnTitleAsColumnHeader":
            raise AttributeError(name)
        return getattr(self.node, name)


@pytest.mark.parametrize("slicer56", [False, True])
def test_the_results_table_on_a_real_table_node(module, scene, slicer56, monkeypatch):
    logic = module.ShapSegExplainLogic()
    expl = explanation()
    made = []
    if slicer56:
        real = scene.AddNewNodeByClass

        def add(cls, name=""):
            node = real(cls, name)
            made.append(node)
            return TableWithoutHeaderCall(node) if cls == "vtkMRMLTableNode" else node
        monkeypatch.setattr(slicer, "mrmlScene", types.SimpleNamespace(AddNewNodeByClass=add))
    table = logic.makeTable(expl, "run 1")
    node = made[0] if slicer56 else table
    from ShapSegExplainLib.panel.result_view import TABLE_COLUMNS
    assert node.IsA("vtkMRMLTableNode") and node.GetNumberOfRows() == len(expl["players"])
    assert [node.GetColumnName(i) for i in range(node.GetNumberOfColumns())] == list(TABLE_COLUMNS)
    phi = [node.GetTable().GetValue(r, TABLE_COLUMNS.index("phi")).ToDouble() for r in range(node.GetNumberOfRows())]
    assert phi == sorted(phi, reverse=True)
    best = max(expl["players"], key=lambda p: p["phi"])
    assert node.GetAttribute("ShapSegExplain.SegmentIds").split(";")[0] == f"player_{best['id']}"
    assert node.GetUseColumnTitleAsColumnHeader() == (not slicer56)


def test_players_seg_nrrd_in_a_real_segmentation_node_with_the_reports_display(module, scene, tmp_path):
    """What loadSegmentation reads (through the segmentation storage node): one segment per
    player with its label value, name with φ, colour and φ tags; then the overlay rules."""
    import SimpleITK as sitk

    from ShapSegExplainLib.display import player_styles
    from ShapSegExplainLib.run.outputs import write_players_seg
    expl = explanation()
    players = expl["players"]
    ct = sitk.Image(16, 12, 6, sitk.sitkInt16)
    ct.SetSpacing((1.5, 1.5, 3.0))
    ids = np.zeros((6, 12, 16), np.int32)
    for i in range(len(players)):
        ids[:, i, 2:10] = i + 1
    path = tmp_path / "players.seg.nrrd"
    write_players_seg(path, ct, ids, players)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "result")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(seg), "Slicer's segmentation reader refused players.seg.nrrd"
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(players)
    styles = player_styles([p["phi"] for p in players], [p["se"] for p in players], [p["kind"] for p in players])
    for p in players:
        segment = segmentation.GetSegment(f"player_{p['id']}")
        assert segment is not None and segment.GetLabelValue() == p["id"] + 1
        assert segment.GetName() == f"{p['name']} ({p['phi']:+.3g})"
        assert np.allclose(segment.GetColor(), styles[p["id"]].rgb, atol=1e-5)
        assert float(_tag(segment, "ShapSegExplain.phi")) == pytest.approx(p["phi"])
        assert _tag(segment, "ShapSegExplain.kind") == p["kind"]
    seg.CreateDefaultDisplayNodes()
    logic = module.ShapSegExplainLogic()
    seg.SetAttribute(module.RESULT_ATTRIBUTE, str(tmp_path))
    logic._explanations[seg.GetID()] = expl
    logic.applyDisplay(seg, 0, 0.0, False)
    display = seg.GetDisplayNode()
    for p, s in zip(players, styles):
        sid = f"player_{p['id']}"
        assert display.GetSegmentOpacity2DFill(sid) == pytest.approx(s.fill)
        assert (display.GetSegmentOpacity2DOutline(sid) > 0) == s.outlined
        assert display.GetSegmentVisibility(sid) == (s.fill > 0)


def _tag(segment, key: str) -> str:
    """A segment tag's value (vtkSegment::GetTag has an output-string overload)."""
    import vtk
    out = vtk.reference("")
    assert segment.GetTag(key, out)
    return str(out)


def test_a_saved_scene_keeps_the_result_without_its_folder(module, scene, tmp_path):
    """The result node keeps explanation.json (without the sampling history) as an attribute:
    a scene saved here and opened where the result folder does not exist still has the
    summary, the legend and the row jumps."""
    from ShapSegExplainLib.panel import result_view
    expl = explanation()
    folder = tmp_path / "result"
    folder.mkdir()
    (folder / "explanation.json").write_text(json.dumps(expl))
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ShapSegExplain run 1")
    seg.SetAttribute(module.RESULT_ATTRIBUTE, str(folder))
    seg.SetAttribute(module.RESULT_JSON_ATTRIBUTE, result_view.compact_explanation(expl))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    shutil.rmtree(folder)                                           # another computer: no folder
    reopened = slicer.vtkMRMLScene()
    reopened.SetURL(str(tmp_path / "scene.mrml"))
    assert reopened.Connect()
    node = reopened.GetFirstNodeByName("ShapSegExplain run 1")
    assert node is not None and node.GetAttribute(module.RESULT_ATTRIBUTE) == str(folder)
    logic = module.ShapSegExplainLogic()
    got = logic.explanationOf(node)
    assert got is not None and got["players"] == expl["players"] and "history" not in got["shapley"]
    assert result_view.summary_text(got).startswith("soft_dice of kidney_left")
    assert module.ShapSegExplainLogic.colorScale(got) == pytest.approx(0.8)


def test_save_as_scene_writes_a_bundle_that_reopens_without_the_result_folder(module, scene, tmp_path):
    """"Save as scene" (teaching, review sessions): one .mrb that a fresh scene reads back with
    the CT, the region, the players (names with φ, colours, explanation.json on the node) and
    the table, after the result folder is gone."""
    import SimpleITK as sitk
    import vtk

    from ShapSegExplainLib.panel import result_view
    from ShapSegExplainLib.run.outputs import write_players_seg
    expl = explanation()
    players, folder = expl["players"], tmp_path / "result"
    folder.mkdir()
    ct_voxels = np.arange(6 * 12 * 16, dtype=np.int16).reshape(6, 12, 16)
    ct = slicer.util.addVolumeFromArray(ct_voxels, name="CT")
    ids = np.zeros((6, 12, 16), np.int32)
    for i in range(len(players)):
        ids[:, i, 2:10] = i + 1
    write_players_seg(folder / "players.seg.nrrd", sitk.GetImageFromArray(ct_voxels), ids, players)
    (folder / "explanation.json").write_text(json.dumps(expl))
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ShapSegExplain run 1")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(folder / "players.seg.nrrd"))
    assert storage.ReadData(seg)
    seg.SetAndObserveStorageNodeID(storage.GetID())
    seg.CreateDefaultDisplayNodes()
    seg.SetAttribute(module.RESULT_ATTRIBUTE, str(folder))
    seg.SetAttribute(module.RESULT_JSON_ATTRIBUTE, result_view.compact_explanation(expl))
    logic = module.ShapSegExplainLogic()
    seg.SetNodeReferenceID(module.TABLE_REFERENCE, logic.makeTable(expl, seg.GetName()).GetID())
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "finding box")
    roi.SetCenter(4.0, 5.0, 6.0)
    roi.SetSize(3.0, 2.0, 1.0)

    size = logic.saveSceneBundle(tmp_path / "review")
    bundle = tmp_path / "review.mrb"
    assert bundle.is_file() and size == bundle.stat().st_size > 0
    print(f"bundle: {size} bytes")
    shutil.rmtree(folder)                                           # another computer: no result folder
    reopened = new_scene()
    io, cache = slicer.vtkDataIOManager(), slicer.vtkCacheManager()
    cache.SetRemoteCacheDirectory(str(tmp_path / "cache"))
    io.SetCacheManager(cache)
    reopened.SetDataIOManager(io)
    assert reopened.ReadFromMRB(str(bundle))
    got_ct = reopened.GetFirstNodeByName("CT")
    assert np.array_equal(vtk.util.numpy_support.vtk_to_numpy(got_ct.GetImageData().GetPointData().GetScalars())
                          .reshape(ct_voxels.shape), ct_voxels)
    got_roi = reopened.GetFirstNodeByName("finding box")
    assert list(got_roi.GetCenter()) == [4.0, 5.0, 6.0] and list(got_roi.GetSize()) == [3.0, 2.0, 1.0]
    got = reopened.GetFirstNodeByName("ShapSegExplain run 1")
    segmentation = got.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(players)
    for p in players:
        segment = segmentation.GetSegment(f"player_{p['id']}")
        assert segment.GetName() == f"{p['name']} ({p['phi']:+.3g})"
        assert float(_tag(segment, "ShapSegExplain.phi")) == pytest.approx(p["phi"])
    assert logic.explanationOf(got)["players"] == players
    table = got.GetNodeReference(module.TABLE_REFERENCE)
    assert table is not None and table.GetNumberOfRows() == len(players)


def test_an_older_slicer_disables_explain_with_one_line(module, scene, monkeypatch):
    """Defect 1: what Slicer 5.8 (Python 3.9) is told instead of an install that cannot work."""
    logic = module.ShapSegExplainLogic()
    point = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "finding")
    point.AddControlPoint([1.0, 2.0, 3.0])
    p = params(module, pointNode=point)
    assert logic.whyCannotRun(p) is None
    monkeypatch.setattr(slicer.app, "minorVersion", 8)
    text = logic.whyCannotRun(p)
    assert text.startswith("ShapSeg Explain needs 3D Slicer 5.10 or later") and "this is Slicer 5.8" in text
