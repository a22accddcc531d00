""""Explain this with ShapSeg Explain" in the right-click menu of a segment: in the Data
module's tree and segment lists, and in a slice view over a segment. A function plugin of
Slicer's subject hierarchy; it owns no items.

Registered by hand (``ShapSegExplain.registerSubjectHierarchyPlugin``), never from the base
class's ``__init__``: Slicer collects a scripted plugin's Python methods only after its
``__init__`` returns, and the handler reads the view-menu actions when the plugin is
registered, so a plugin that registers itself in ``__init__`` has no view-menu actions
(Slicer's subject-hierarchy script repository, "view context menu action")."""
import qt
import vtk

import slicer
from slicer.i18n import tr as _
from SubjectHierarchyPlugins import AbstractScriptedSubjectHierarchyPlugin

NAME = "ShapSegExplain"
ACTION_NAME = "ShapSegExplainThisAction"
SEGMENT_ID_ATTRIBUTE = "segmentID"     # what the Segments plugin stores on a segment's virtual item
RESULT_ATTRIBUTE = "ShapSegExplain.Result"     # the module's own result segmentations are not targets


class ShapSegExplainSubjectHierarchyPlugin(AbstractScriptedSubjectHierarchyPlugin):
    filePath = __file__       # qSlicerSubjectHierarchyScriptedPlugin loads this file by its path

    def __init__(self, scriptedPlugin):
        # not AbstractScriptedSubjectHierarchyPlugin.__init__: it registers before the methods exist
        self.scriptedPlugin = scriptedPlugin
        scriptedPlugin.name = NAME
        self.target = None            # (segmentation node, segment ID) the menu was opened on
        self.explainAction = qt.QAction(_("Explain this with ShapSeg Explain"), scriptedPlugin)
        self.explainAction.objectName = ACTION_NAME
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
        self._offer(segmentOfItem(itemID) if itemID else None)

    def showViewContextMenuActionsForItem(self, itemID, eventData=None):
        # a view passes the scene's item, not a segment's: the segment is found where the user clicked
        self._offer(segmentAtPosition(eventData or {}))

    def _offer(self, target):
        self.target = target
        self.explainAction.visible = target is not None

    def onExplainThis(self):
        if self.target is None:
            return
        segNode, segmentId = self.target
        slicer.util.selectModule("ShapSegExplain")
        slicer.modules.shapsegexplain.widgetRepresentation().self().explainSegment(segNode, segmentId)


def segmentOfItem(itemID):
    """(segmentation node, segment ID) of a segment's subject-hierarchy item, else None."""
    handler = slicer.qSlicerSubjectHierarchyPluginHandler.instance()
    if not handler.pluginByName("Segments").canOwnSubjectHierarchyItem(itemID):
        return None
    shNode = handler.subjectHierarchyNode()
    segNode = shNode.GetItemDataNode(shNode.GetItemParent(itemID))
    segmentId = shNode.GetItemAttribute(itemID, SEGMENT_ID_ATTRIBUTE)
    return (segNode, segmentId) if segNode is not None and segmentId else None


def segmentAtPosition(eventData):
    """The visible segment under a right-click in a slice view (``eventData``'s ``ViewNodeID``
    and ``WorldPosition``), as the segmentations' 2D displayable manager sees it; else None."""
    viewNode = slicer.mrmlScene.GetNodeByID(eventData.get("ViewNodeID") or "")
    position = eventData.get("WorldPosition")
    if viewNode is None or position is None or not viewNode.IsA("vtkMRMLSliceNode"):
        return None
    manager = slicer.app.applicationLogic().GetViewDisplayableManagerByClassName(
        viewNode, "vtkMRMLSegmentationsDisplayableManager2D")
    if manager is None:
        return None
    for segNode in slicer.util.getNodesByClass("vtkMRMLSegmentationNode"):
        display = segNode.GetDisplayNode()
        if display is None or segNode.GetAttribute(RESULT_ATTRIBUTE) or not display.GetVisibility():
            continue
        found = vtk.vtkStringArray()
        manager.GetVisibleSegmentsForPosition(list(position), display, found)
        if found.GetNumberOfValues():
            return segNode, found.GetValue(0)
    return None
