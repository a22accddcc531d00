"""The panel's segment choices: a segment as the region or the reference, its pieces listed
(largest first) and picked, the target guessed from its name, "Explain this" from the subject
hierarchy. A mixin of the module's Widget."""
from __future__ import annotations

from .parameters import Region


class SignalsBlocked:
    """``with SignalsBlocked(widget):`` sets a widget without triggering its own handlers."""

    def __init__(self, widget) -> None:
        self.widget = widget

    def __enter__(self):
        self.previous = self.widget.blockSignals(True)
        return self.widget

    def __exit__(self, *exc) -> None:
        self.widget.blockSignals(self.previous)


class WidgetRegionMixin:
    def onReferenceChanged(self, *args) -> None:
        if self._parameterNode:
            node = self.ui.referenceSegmentSelector.currentNode()
            segmentId = self.ui.referenceSegmentSelector.currentSegmentID() or ""
            self._parameterNode.referenceSegmentation = node
            self._parameterNode.referenceSegmentId = segmentId
            self._parameterNode.referenceIsland = 0

    def onRegionSegmentChanged(self, *args) -> None:
        """A segment chosen as the region: its pieces listed (all of them at first) and the
        target guessed from its name or terminology when the model has such a class."""
        p = self._parameterNode
        if not p:
            return
        p.regionSegmentation = self.ui.regionSegmentSelector.currentNode()
        p.regionSegmentId = self.ui.regionSegmentSelector.currentSegmentID() or ""
        p.regionIsland = 0
        guess = self.logic.targetForSegment(p.regionSegmentation, p.regionSegmentId,
                                            self.logic.modelClasses(p.modelPath) if p.modelPath else [])
        if guess:
            p.targetClass = guess

    def fillIslands(self) -> None:
        """The piece lists of the region segment and of the reference segment."""
        p = self._parameterNode
        if p is None:
            return
        region = self.logic.islandChoices(p)[0] if p.region == Region.SEGMENT else []
        reference = self.logic.pieceChoices(p.referenceSegmentation, p.referenceSegmentId, p.inputVolume)[0]
        for box, choices, current in ((self.ui.islandComboBox, region, p.regionIsland),
                                      (self.ui.referenceIslandComboBox, reference, p.referenceIsland)):
            with SignalsBlocked(box):
                box.clear()
                for text in choices:
                    box.addItem(text)
                box.currentIndex = min(current, len(choices) - 1) if choices else -1
            box.enabled = len(choices) > 1
        self.ui.referenceIslandLabel.visible = self.ui.referenceIslandComboBox.visible = len(reference) > 1

    def explainSegment(self, segNode, segmentId: str) -> None:
        """ "Explain this" on a segment (the subject hierarchy's context menu): the segment
        becomes the region, its CT the input, its class the target; Explain gets the focus."""
        if self._parameterNode is None:
            self.initializeParameterNode()
        self.logic.explainSegment(self._parameterNode, segNode, segmentId)
        self.updateGUIFromParameterNode()
        self.ui.applyButton.setFocus()

    def onIslandChanged(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.regionIsland = index

    def onReferenceIslandChanged(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.referenceIsland = index
