"""Exporting what the panel holds for the worker: a segment (or one of its pieces) on the
CT's grid, the reference and the anatomy as files in world coordinates like the CT, the
region as RAS numbers. A mixin of the module's Logic (it keeps ``_islands`` and
``trustedModelFolders``)."""
from __future__ import annotations

import pathlib

import vtk

import slicer
from slicer.i18n import tr as _

from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.panel import segment_region
from ShapSegExplainLib.panel.run_request import RunRequest

from .parameters import Region, ShapSegExplainParameterNode


class ExportsMixin:
    @staticmethod
    def labelmapOnCt(segNode, segmentIds: list[str], ct):
        """Segments as one label map node on the CT's grid (label i + 1 = segmentIds[i]):
        Slicer's export onto a reference volume, whatever the segmentation's own geometry.
        The caller removes the node."""
        ids = vtk.vtkStringArray()
        for s in segmentIds:
            ids.InsertNextValue(s)
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "ShapSegExplain export")
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segNode, ids, labelmap, ct, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
            slicer.mrmlScene.RemoveNode(labelmap)
            raise ShapSegError(_("Could not resample the segmentation {n} to the CT.").format(n=segNode.GetName()),
                               "bad_segmentation")
        return labelmap

    @staticmethod
    def writeLikeCt(labelmap, ct, path: pathlib.Path) -> str:
        """A label map on the CT's grid written in world coordinates, like the CT."""
        labelmap.SetAndObserveTransformNodeID(ct.GetTransformNodeID())
        slicer.util.exportNode(labelmap, str(path), {"useCompression": 1}, world=True)
        return str(path)

    @staticmethod
    def ownVoxels(segNode, segmentId: str, onCt) -> int:
        """A segment's voxels in its own geometry (empty, or outside the CT?); a segment with no
        binary labelmap of its own (surface only) counts its voxels on the CT."""
        segment = segNode.GetSegmentation().GetSegment(segmentId)
        try:
            own = slicer.util.arrayFromSegmentInternalBinaryLabelmap(segNode, segmentId)
            return int((own == segment.GetLabelValue()).sum())
        except Exception:
            return int(onCt.sum())

    def pieceChoices(self, segNode, segmentId: str, ct) -> tuple[list[str], str | None]:
        """A segment's piece list on the CT's grid, and why it cannot be a region (or None);
        cached per segment while the segmentation and the CT are unchanged."""
        if not (segNode and segmentId and ct):
            return [], None
        key = (segNode.GetID(), segmentId, segNode.GetMTime(), segNode.GetSegmentation().GetMTime(), ct.GetID(),
               ct.GetMTime())
        if key not in self._islands:
            labelmap = self.labelmapOnCt(segNode, [segmentId], ct)
            try:
                mask = slicer.util.arrayFromVolume(labelmap) > 0
                spacing = labelmap.GetSpacing()
            finally:
                slicer.mrmlScene.RemoveNode(labelmap)
            problem = segment_region.region_problem(mask, self.ownVoxels(segNode, segmentId, mask))
            try:
                found = [] if problem else segment_region.islands(mask, spacing)
                choices = segment_region.island_choices(found) if found else []
            except ImportError:     # scipy comes with the dependencies; until then the segment is one region
                choices = [_("The whole segment (Install splits it into pieces)")]
            self._islands = {k: v for k, v in self._islands.items() if k[:2] != key[:2]}   # one entry per segment
            self._islands[key] = (choices, problem)
        return self._islands[key]

    def islandChoices(self, p) -> tuple[list[str], str | None]:
        """The region segment's pieces (and its problem, if any)."""
        return self.pieceChoices(p.regionSegmentation, p.regionSegmentId, p.inputVolume)

    def exportPiece(self, segNode, segmentId: str, piece: int, ct, path: pathlib.Path) -> str:
        """A segment's piece (0: all of it) written as a mask on the CT's grid, in world
        coordinates like the CT: the job's --roi-mask, or its --reference."""
        labelmap = self.labelmapOnCt(segNode, [segmentId], ct)
        try:
            mask = segment_region.pick(slicer.util.arrayFromVolume(labelmap) > 0, piece)
            slicer.util.updateVolumeFromArray(labelmap, mask.astype("uint8"))
            return self.writeLikeCt(labelmap, ct, path)
        finally:
            slicer.mrmlScene.RemoveNode(labelmap)

    @staticmethod
    def targetForSegment(segNode, segmentId: str, classes: list[str]) -> str | None:
        """The model class a segment is, from its name or its terminology (None: no match)."""
        segment = segNode.GetSegmentation().GetSegment(segmentId) if segNode and segmentId else None
        if segment is None:
            return None
        terminology = segment.GetTerminology() if hasattr(segment, "GetTerminology") else None
        return segment_region.target_for_segment(segment.GetName(), terminology, classes)

    def explainSegment(self, p, segNode, segmentId: str) -> str | None:
        """"Explain this" on a segment: it becomes the region (all pieces), its CT the input
        (the segmentation's reference volume, if any), the target its class if the model has
        one; returns the guessed target."""
        p.region, p.regionSegmentation, p.regionSegmentId, p.regionIsland = Region.SEGMENT, segNode, segmentId, 0
        reference = segNode.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
        if reference is not None and reference.IsA("vtkMRMLScalarVolumeNode") \
                and not reference.IsA("vtkMRMLLabelMapVolumeNode"):
            p.inputVolume = reference
        guess = self.targetForSegment(segNode, segmentId, self.modelClasses(p.modelPath) if p.modelPath else [])
        if guess:
            p.targetClass = guess
        return guess

    def exportInputs(self, p: ShapSegExplainParameterNode, folder: pathlib.Path) -> RunRequest:
        """The CT, reference and anatomy as files in world coordinates (transforms hardened),
        the region as RAS numbers: what the worker reads."""
        inputs = folder / "inputs"
        inputs.mkdir()
        ct = p.inputVolume
        ctPath = str(inputs / "ct.nrrd")
        slicer.util.exportNode(ct, ctPath, {"useCompression": 0}, world=True)
        request = RunRequest(
            ct=ctPath, model=str(p.modelPath), target=p.targetClass, region=p.region.value, snap_mm=p.snapMm,
            players=p.players.value, spacing_mm=p.spacingMm, margin_mm=p.marginMm, min_size_ml=p.minSizeMl,
            fixed_context=p.fixedContext,
            value=p.value.value, normalized=p.normalized, budget=p.budget, time_limit_s=p.timeLimitS, seed=p.seed,
            device=p.device.value, mirroring=p.mirroring, configuration=p.configuration, folds=p.folds,
            trust_checkpoint=str(p.modelPath) in self.trustedModelFolders)
        if p.region == Region.SEGMENT:
            request.roi_mask = self.exportPiece(p.regionSegmentation, p.regionSegmentId, p.regionIsland, ct,
                                                inputs / "roi.nrrd")
        else:
            request.ras_point, request.ras_bounds = self.regionOf(p)
        if p.referenceSegmentation and p.referenceSegmentId:
            request.reference = self.exportPiece(p.referenceSegmentation, p.referenceSegmentId, p.referenceIsland, ct,
                                                 inputs / "reference.nrrd")
        if p.anatomySegmentation:
            ids = vtk.vtkStringArray()
            p.anatomySegmentation.GetSegmentation().GetSegmentIDs(ids)
            segmentIds = [ids.GetValue(i) for i in range(ids.GetNumberOfValues())]
            request.anatomy, request.anatomy_names = self.exportSegments(p.anatomySegmentation, segmentIds, ct,
                                                                         inputs / "anatomy.nrrd")
        return request

    @staticmethod
    def regionOf(p: ShapSegExplainParameterNode) -> tuple[list[float] | None, list[float] | None]:
        """(RAS point, RAS bounds) of the region: the last point placed, or the box's world
        axis-aligned bounds (xmin, xmax, ymin, ymax, zmin, zmax)."""
        if p.region == Region.POINT:
            n = p.pointNode.GetNumberOfControlPoints()
            position = [0.0, 0.0, 0.0]
            p.pointNode.GetNthControlPointPositionWorld(n - 1, position)
            return list(position), None
        bounds = [0.0] * 6
        p.roiNode.GetRASBounds(bounds)
        return None, bounds

    @staticmethod
    def exportSegments(segNode, segmentIds: list[str], ct, path: pathlib.Path) -> tuple[str, dict[int, str]]:
        """Segments as one label map on the CT's grid (label i + 1 = segmentIds[i]), exported in
        world coordinates like the CT; returns the file and the label names."""
        labelmap = ExportsMixin.labelmapOnCt(segNode, segmentIds, ct)
        try:
            ExportsMixin.writeLikeCt(labelmap, ct, path)
        finally:
            slicer.mrmlScene.RemoveNode(labelmap)
        segmentation = segNode.GetSegmentation()
        names = {i + 1: segmentation.GetSegment(s).GetName() for i, s in enumerate(segmentIds)}
        return str(path), names
