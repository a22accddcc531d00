"""The result in the scene: the live preview recoloured as φ converges, the final
segmentation with its table, the report's display rules, a scene bundle. A mixin of the
module's Logic (it keeps ``_explanations`` and the live ``run``)."""
from __future__ import annotations

import pathlib

import vtk

import slicer

from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.panel import result_view

from .parameters import RESULT_ATTRIBUTE, RESULT_JSON_ATTRIBUTE, TABLE_REFERENCE


class ResultsMixin:
    def loadPreview(self, path: str, players: list[dict]):
        """The player map as a segmentation, one segment per player, grey until the first φ."""
        labelmap = slicer.util.loadLabelVolume(path, {"show": False})
        segNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                     f"ShapSegExplain running: {self.run.label}")
        segNode.CreateDefaultDisplayNodes()
        try:
            slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segNode)
        finally:
            slicer.mrmlScene.RemoveNode(labelmap)
        byLabel = {p["id"] + 1: p for p in players}
        segmentation = segNode.GetSegmentation()
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            player = byLabel.get(segment.GetLabelValue())
            if player is not None:
                segment.SetName(player["name"])
                segment.SetColor(0.6, 0.6, 0.6)
        return segNode

    def colorSegments(self, segNode, players: list[dict], phi: list[float], se: list[float] | None = None) -> None:
        """Colour and 2D fill opacity of each player from the current φ and SE (live or final)."""
        display = segNode.GetDisplayNode()
        segmentation = segNode.GetSegmentation()
        styles = result_view.styles_by_label(players, phi, se)
        with slicer.util.NodeModify(segNode):
            for i in range(segmentation.GetNumberOfSegments()):
                segment = segmentation.GetNthSegment(i)
                if segment.GetLabelValue() not in styles:
                    continue
                rgb, opacity = styles[segment.GetLabelValue()]
                segment.SetColor(*rgb)
                display.SetSegmentOpacity2DFill(segmentation.GetNthSegmentID(i), opacity)

    def loadResult(self, outDir: pathlib.Path, label: str):
        """players.seg.nrrd over the CT (names and colours from the file, opacity by |φ|) and
        its table; both named after the run and kept alongside earlier runs."""
        expl = result_view.read_explanation(outDir)
        expl["out"] = str(outDir)
        segNode = slicer.util.loadSegmentation(str(outDir / "players.seg.nrrd"))
        segNode.SetName(slicer.mrmlScene.GenerateUniqueName(f"ShapSegExplain {label}"))
        segNode.SetAttribute(RESULT_ATTRIBUTE, str(outDir))
        segNode.SetAttribute(RESULT_JSON_ATTRIBUTE, result_view.compact_explanation(expl))
        table = self.makeTable(expl, segNode.GetName())
        segNode.SetNodeReferenceID(TABLE_REFERENCE, table.GetID())
        self._explanations[segNode.GetID()] = expl
        self.applyDisplay(segNode, 0, 0.0)
        return segNode

    def makeTable(self, expl: dict, name: str):
        """The table node: player, organ, φ, ±SE, mL, rank (largest φ first)."""
        rows = result_view.table_rows(expl["players"])
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} table")
        columns = []
        for title in result_view.TABLE_COLUMNS:
            array = vtk.vtkStringArray() if title in ("Player", "Organ") else \
                vtk.vtkIntArray() if title == "Rank" else vtk.vtkDoubleArray()
            array.SetName(title)
            columns.append(array)
        for row in rows:
            for array, title in zip(columns, result_view.TABLE_COLUMNS):
                array.InsertNextValue(row[title])
        for array in columns:
            table.AddColumn(array)
        if hasattr(table, "SetUseColumnTitleAsColumnHeader"):    # Slicer >= 5.8; the titles are the names anyway
            table.SetUseColumnTitleAsColumnHeader(True)
        table.SetLocked(True)
        table.SetAttribute("ShapSegExplain.SegmentIds", ";".join(r["segment_id"] for r in rows))
        return table

    @staticmethod
    def saveSceneBundle(path: str | pathlib.Path) -> int:
        """The scene as one Slicer data bundle (``.mrb``): every node with its data inside, so a
        finished explanation reopens on another computer without its result folder (the CT, the
        region, the players with colours and φ, explanation.json on the result node, the table).
        ``vtkMRMLScene::WriteToMRB`` is what Slicer's own scene writer calls for ``.mrb``
        (``qSlicerSceneWriter::writeToMRB``). Returns the bundle's size in bytes."""
        path = pathlib.Path(path).resolve()
        path = path if path.suffix.lower() == ".mrb" else path.with_name(path.name + ".mrb")
        scene = slicer.mrmlScene
        scene.SetURL(str(path))
        scene.SetRootDirectory(str(path.parent))
        if not path.parent.is_dir() or not scene.WriteToMRB(str(path)):
            raise ShapSegError(f"cannot save the scene as {path} (is the folder there and writable?)")
        return path.stat().st_size

    def explanationOf(self, segNode) -> dict | None:
        if segNode is None or not segNode.GetAttribute(RESULT_ATTRIBUTE):
            return None
        if segNode.GetID() not in self._explanations:      # a result from a saved scene, maybe another computer's
            expl = result_view.stored_explanation(segNode.GetAttribute(RESULT_ATTRIBUTE),
                                                  segNode.GetAttribute(RESULT_JSON_ATTRIBUTE))
            if expl is None:
                return None
            self._explanations[segNode.GetID()] = expl
        return self._explanations[segNode.GetID()]

    def tableOf(self, segNode):
        return segNode.GetNodeReference(TABLE_REFERENCE) if segNode else None

    @staticmethod
    def colorScale(expl: dict) -> float:
        return result_view.legend_scale(expl["players"])

    def applyDisplay(self, segNode, topK: int, minAbsPhi: float, showUncertain: bool = False) -> None:
        """The report's display rules (fill by |φ|, outlines on the top players, uncertain
        players hidden unless asked for) and the "top k / hide |φ| below t" filter."""
        expl = self.explanationOf(segNode)
        if expl is None:
            return
        styles = result_view.player_display(expl["players"], show_uncertain=showUncertain)
        phi = [p["phi"] for p in expl["players"]]
        visible = result_view.visible_players(phi, topK, minAbsPhi, styles)
        display = segNode.GetDisplayNode()
        with slicer.util.NodeModify(display):
            for player, style, shown in zip(expl["players"], styles, visible):
                segmentId = result_view.segment_id(player["id"])
                display.SetSegmentOpacity2DFill(segmentId, style.fill)
                display.SetSegmentOpacity2DOutline(segmentId, result_view.OUTLINE_OPACITY if style.outlined else 0.0)
                display.SetSegmentVisibility(segmentId, bool(shown))

    def showOnly(self, segNode, showAll: bool = False) -> None:
        """Show the chosen result (and hide the others unless comparing)."""
        for node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode"):
            if node.GetAttribute(RESULT_ATTRIBUTE) and node.GetDisplayNode():
                shown = showAll or (segNode is not None and node.GetID() == segNode.GetID())
                node.GetDisplayNode().SetVisibility(shown)

    def jumpToPlayer(self, segNode, row: int) -> None:
        """Centre the slice views on the player of a table row."""
        expl = self.explanationOf(segNode)
        if expl is None:
            return
        rows = result_view.table_rows(expl["players"])
        if 0 <= row < len(rows) and rows[row]["centroid_ras"]:
            x, y, z = rows[row]["centroid_ras"]
            slicer.modules.markups.logic().JumpSlicesToLocation(x, y, z, True)
