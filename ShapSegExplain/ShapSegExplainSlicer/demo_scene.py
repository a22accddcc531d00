"""The demo case set up as a reader would (Sample Data and the self-test). A mixin of the
module's Logic."""
from __future__ import annotations

import pathlib

import vtk

import slicer

from .parameters import Device, Players, Region, Value


class DemoSceneMixin:
    def setUpDemoScene(self, budget: int = 0, region: "Region | None" = None):
        """The demo case as a reader sets it up (Sample Data and the self-test): the phantom CT,
        a point on the planted finding (or a box around it), the true kidney as the reference
        segment, the phantom's organs as the anatomy, the demo model and its target. Needs
        SimpleITK and scipy (Slicer's own), not torch."""
        import json
        import tempfile

        import numpy as np
        from ShapSegExplainLib.demo.demo_case import DEMO_SEED, write_demo_case
        folder = pathlib.Path(tempfile.mkdtemp(prefix="ShapSegExplainDemo-"))
        case = write_demo_case(folder, DEMO_SEED)
        files = case.files
        ct = slicer.util.loadVolume(files["ct"])
        ct.SetName("ShapSegExplain demo phantom")
        drawn = slicer.util.loadLabelVolume(files["roi"], {"show": False})
        ijk = np.argwhere(slicer.util.arrayFromVolume(drawn) > 0)[:, ::-1]      # (i, j, k)
        ijkToRas = vtk.vtkMatrix4x4()
        drawn.GetIJKToRASMatrix(ijkToRas)
        corners = np.array([ijkToRas.MultiplyPoint([*c, 1.0])[:3] for c in (ijk.min(0) - 0.5, ijk.max(0) + 0.5)])
        slicer.mrmlScene.RemoveNode(drawn)
        names = {int(k): v for k, v in json.loads(pathlib.Path(files["anatomy_labels"]).read_text()).items()}
        reference = self.segmentationFromLabels(files["reference"], {1: "kidney_left (truth)"})
        anatomy = self.segmentationFromLabels(files["anatomy"], names)
        p = self.getParameterNode()
        p.inputVolume, p.modelPath, p.targetClass = ct, self.demoModelPath(), "kidney_left"
        if region == Region.BOX:
            roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "finding box")
            roi.SetCenter(*corners.mean(0))
            roi.SetSize(*np.abs(corners[1] - corners[0]))
            p.region, p.roiNode = Region.BOX, roi
        else:
            point = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "finding")
            point.AddControlPoint(list(corners.mean(0)))
            p.region, p.pointNode = Region.POINT, point
        p.referenceSegmentation = reference
        p.referenceSegmentId = reference.GetSegmentation().GetNthSegmentID(0)
        p.anatomySegmentation = anatomy
        p.players, p.spacingMm, p.marginMm, p.value = Players.HYBRID, 20.0, 10.0, Value.SOFT_FP
        p.fixedContext = True
        p.device, p.mirroring, p.budget = Device.CPU, False, budget
        return p, case

    @staticmethod
    def segmentationFromLabels(path: str, names: dict):
        labelmap = slicer.util.loadLabelVolume(path, {"show": False})
        segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segNode)
        slicer.mrmlScene.RemoveNode(labelmap)
        segmentation = segNode.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            segment.SetName(names.get(segment.GetLabelValue(), segment.GetName()))
        return segNode
