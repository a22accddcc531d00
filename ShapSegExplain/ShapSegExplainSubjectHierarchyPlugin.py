""""Explain this with ShapSeg Explain" in the right-click menu of a segment (Data module,
segment lists, slice views): a function plugin of Slicer's subject hierarchy, registered by
the module at startup. It owns no items; it only adds the action to segment items."""
import qt

import slicer
from AbstractScriptedSubjectHierarchyPlugin import *  # noqa: F403 (Slicer's base for scripted plugins)
from slicer.i18n import tr as _

SEGMENT_ID_ATTRIBUTE = "segmentID"     # what the Segments plugin stores on a segment's virtual item


class ShapSegExplainSubjectHierarchyPlugin(AbstractScriptedSubjectHierarchyPlugin):  # noqa: F405
    filePath = __file__       # qSlicerSubjectHierarchyScriptedPlugin loads this file by its path

    def __init__(self, scriptedPlugin):
        scriptedPlugin.name = "ShapSegExplain"
        AbstractScriptedSubjectHierarchyPlugin.__init__(self, scriptedPlugin)  # noqa: F405
        self.explainAction = qt.QAction(_("Explain this with ShapSeg Explain"), scriptedPlugin)
        self.explainAction.objectName = "ShapSegExplainThisAction"
        self.explainAction.connect("triggered()", self.onExplainThis)

    def canAddNodeToSubjectHierarchy(self, node, parentItemID):
        return 0.0

    def canOwnSubjectHierarchyItem(self, itemID):
        return 0.0

    def roleForPlugin(self):
        return "N/A"

    def itemContextMenuActions(self):
        return [self.explainAction]

    def viewContextMenuActions(self):
        return [self.explainAction]

    def sceneContextMenuActions(self):
        return []

    def showContextMenuActionsForItem(self, itemID):
        self.explainAction.visible = bool(itemID) and self._segmentOf(itemID) is not None

    def showViewContextMenuActionsForItem(self, itemID, eventData=None):
        self.showContextMenuActionsForItem(itemID)

    @staticmethod
    def _segmentOf(itemID):
        """(segmentation node, segment ID) of a segment's item, or None for any other item."""
        handler = slicer.qSlicerSubjectHierarchyPluginHandler.instance()
        if not handler.pluginByName("Segments").canOwnSubjectHierarchyItem(itemID):
            return None
        shNode = handler.subjectHierarchyNode()
        segNode = shNode.GetItemDataNode(shNode.GetItemParent(itemID))
        segmentId = shNode.GetItemAttribute(itemID, SEGMENT_ID_ATTRIBUTE)
        return (segNode, segmentId) if segNode is not None and segmentId else None

    def onExplainThis(self):
        handler = slicer.qSlicerSubjectHierarchyPluginHandler.instance()
        found = self._segmentOf(handler.currentItem())
        if found is None:
            return
        slicer.util.selectModule("ShapSegExplain")
        widget = slicer.modules.shapsegexplain.widgetRepresentation().self()
        widget.explainSegment(*found)
