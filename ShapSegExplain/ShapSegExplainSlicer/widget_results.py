"""The panel's result view: the summary, legend and table of the chosen result, its display
filter, centring on a table row, the result folder and the scene bundle. A mixin of the
module's Widget."""
from __future__ import annotations

import pathlib

import qt

import slicer
from slicer.i18n import tr as _

from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.panel import result_view


class WidgetResultsMixin:
    def showResult(self, segNode) -> None:
        p = self._parameterNode
        expl = self.logic.explanationOf(segNode)
        self.ui.summaryLabel.text = result_view.summary_text(expl) if expl else ""
        self.ui.faithfulnessLabel.text = result_view.faithfulness_text(expl.get("faithfulness")) if expl else ""
        self.ui.openFolderButton.enabled = self.ui.saveSceneButton.enabled = expl is not None
        self.ui.resultTableView.setMRMLTableNode(self.logic.tableOf(segNode))
        if expl:
            vmax = self.logic.colorScale(expl)
            self.ui.legendBar.styleSheet = result_view.legend_stylesheet(vmax)
            low, mid, high = result_view.legend_labels(vmax, expl["value"].get("unit", ""))
            self.ui.legendMinLabel.text, self.ui.legendMidLabel.text, self.ui.legendMaxLabel.text = low, mid, high
            self.logic.applyDisplay(segNode, p.topK, p.minAbsPhi, p.showUncertain)
        self.logic.showOnly(segNode, showAll=p.showAllResults)

    def onTableSelection(self) -> None:
        view = self.ui.resultTableView
        indexes = view.selectionModel().selectedIndexes() if view.selectionModel() else []
        if not indexes:
            return
        index = view.sortFilterProxyModel().mapToSource(indexes[0])
        try:
            row = view.tableModel().mrmlTableRowIndex(index)
        except AttributeError:
            row = index.row()
        self.logic.jumpToPlayer(self._parameterNode.resultSegmentation, row)

    def onOpenFolder(self) -> None:
        expl = self.logic.explanationOf(self._parameterNode.resultSegmentation)
        if expl:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(expl["out"]))

    def onSaveScene(self) -> None:
        """Teaching and review sessions: the scene with this explanation as one ``.mrb`` file."""
        expl = self.logic.explanationOf(self._parameterNode.resultSegmentation)
        default = str(pathlib.Path(expl["out"]).with_suffix(".mrb")) if expl else ""
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save as scene"), default,
                                              _("Slicer data bundle (*.mrb)"))
        if not path:
            return
        try:
            size = self.logic.saveSceneBundle(path)
        except ShapSegError as e:
            slicer.util.errorDisplay(str(e), windowTitle=_("ShapSeg Explain"))
            return
        slicer.util.showStatusMessage(_("Saved {path} ({mb:.1f} MB)").format(path=path, mb=size / 1e6), 5000)
