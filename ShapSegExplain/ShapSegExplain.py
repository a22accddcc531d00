"""ShapSegExplain: Shapley-value explanations of an nnU-Net CT segmentation, in 3D Slicer.

Thin glue over ``ShapSegExplainLib``: the panel fills a ``RunRequest``, the CT and the
optional segmentations are exported into a run folder, and ``shapseg worker`` runs in a
separate process (Slicer's own ``PythonSlicer``). Its JSON-line events drive the progress
bar and a live overlay; the result is loaded as a segmentation coloured by φ plus a table.
Only torch-free parts of the engine are imported here, so the module opens instantly.
"""
from __future__ import annotations

import logging
import os
import pathlib
import shutil
import sys

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


def _extensionRoot() -> pathlib.Path:
    """Where ShapSegExplainLib/ and Resources/ are: next to this file once Slicer's CMake has
    installed the extension, one folder up in a source clone added as an additional module
    path (no build); that folder is then put on sys.path."""
    here = pathlib.Path(__file__).resolve().parent
    root = here if (here / "ShapSegExplainLib").is_dir() else here.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


ROOT = _extensionRoot()

# Torch-free engine parts only (Testing/slicer/test_slicer_module.py checks that none imports torch).
from ShapSegExplainLib.demo import DEMO_MODEL  # noqa: E402 (after the path set-up above)
from ShapSegExplainLib.errors import ShapSegError  # noqa: E402
from ShapSegExplainLib.panel import dependencies  # noqa: E402
from ShapSegExplainLib.panel.model_discovery import find_models, is_model_folder, model_classes  # noqa: E402
from ShapSegExplainLib.panel.run_request import (LiveRun, new_run_folder, prepare_run, resume_run,  # noqa: E402
                                                  run_label, saved_coalitions)
from ShapSegExplainLib.panel.worker_events import RunState  # noqa: E402
from ShapSegExplainLib.panel.worker_process import WorkerProcess, find_python_slicer, package_root, worker_command  # noqa: E402

# The module's Slicer-side parts, by concern (ShapSegExplainSlicer/: the module's folder is on sys.path).
# Slicer's Reload runs this file again but imports nothing anew: drop the parts first, so that an
# edited part is what the reloaded module uses.
for _name in [n for n in sys.modules if n == "ShapSegExplainSlicer" or n.startswith("ShapSegExplainSlicer.")]:
    del sys.modules[_name]
from ShapSegExplainSlicer.demo_scene import DemoSceneMixin  # noqa: E402
from ShapSegExplainSlicer.exports import ExportsMixin  # noqa: E402
from ShapSegExplainSlicer.installer import InstallerMixin  # noqa: E402
from ShapSegExplainSlicer.parameters import (RESULT_ATTRIBUTE, RESULT_JSON_ATTRIBUTE, SAMPLE_CATEGORY,  # noqa: E402,F401
                                             SAMPLE_NAME, TABLE_REFERENCE, Device, Players, Region,
                                             ShapSegExplainParameterNode, Value)
from ShapSegExplainSlicer.results import ResultsMixin  # noqa: E402
from ShapSegExplainSlicer.selftest import ShapSegExplainSelfTest  # noqa: E402
from ShapSegExplainSlicer.widget_region import SignalsBlocked, WidgetRegionMixin  # noqa: E402
from ShapSegExplainSlicer.widget_results import WidgetResultsMixin  # noqa: E402
from ShapSegExplainSlicer.widget_run import WidgetRunMixin  # noqa: E402


def unsupportedSlicer() -> str | None:
    """One line when this Slicer is too old to run explanations (Python < 3.10), else None."""
    app = getattr(slicer, "app", None)
    major, minor = getattr(app, "majorVersion", None), getattr(app, "minorVersion", None)
    version = f"{major}.{minor}" if major is not None and minor is not None else None
    return dependencies.unsupported(tuple(sys.version_info[:3]), version)


def markupsEvents(node) -> tuple[int, ...]:
    """The events that say a markups node's control points changed (placed, moved, removed),
    and ``ModifiedEvent`` (an ROI resized)."""
    names = ("PointPositionDefinedEvent", "PointModifiedEvent", "PointRemovedEvent")
    return tuple(getattr(node, n) for n in names if hasattr(node, n)) + (vtk.vtkCommand.ModifiedEvent,)


POLL_MS = 150


#
# ShapSegExplain
#
class ShapSegExplain(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        slicer.app.connect("startupCompleted()", registerStartupItems)
        self.parent.title = _("ShapSeg Explain")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["ShapSegExplain developers (ShapSegExplain project)"]
        self.parent.helpText = _("""
Explains an nnU-Net segmentation with Shapley values. Click a suspicious finding (or draw a
box), choose the players and what to explain, and press Explain: the players appear over the
CT coloured by their contribution (red raises the value, blue lowers it), with a table.
See the <a href="https://github.com/ShapSegExplain/ShapSegExplain#use-it-in-3d-slicer">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Method after Coimbra Brioso et al., "Efficient KernelSHAP Explanations for Patch-based 3D
Medical Image Segmentation" (2026). Uses nnU-Net, SimpleITK, slicerio and PyTorch.
""")


#
# The demo phantom in Sample Data, "Explain this" on segments: registered when Slicer has
# started (Sample Data and the subject hierarchy exist by then) and again when the panel is
# set up, so a module loaded later (Extension Wizard, reload) gets both; each on its own, once.
#
PLUGIN_FILE = "ShapSegExplainPlugins/ShapSegExplainSubjectHierarchyPlugin.py"


def registerStartupItems() -> None:
    for register in (registerSampleData, registerSubjectHierarchyPlugin):
        try:
            register()
        except Exception:           # one failing must not cost the other (Slicer logs it)
            logging.exception("ShapSeg Explain: %s failed", register.__name__)


def registerSubjectHierarchyPlugin() -> None:
    """ "Explain this with ShapSeg Explain" on every segment's right-click menu. Registered by
    hand after ``setPythonSource`` (Slicer's pattern for plugins with view-menu actions)."""
    handler = slicer.qSlicerSubjectHierarchyPluginHandler.instance()
    if handler.pluginByName("ShapSegExplain") is not None:
        return
    scripted = slicer.qSlicerSubjectHierarchyScriptedPlugin(None)
    scripted.setPythonSource(str(pathlib.Path(__file__).resolve().parent / PLUGIN_FILE))
    handler.registerPlugin(scripted)


def registerSampleData() -> None:
    """The demo phantom in Sample Data (category *ShapSeg Explain*): generated here, nothing is
    downloaded, so it has no URI (empty lists: ``SampleDataSource`` takes ``len`` of each); the
    button calls ``loadDemoSample``, which opens the module with the demo model, its target and
    a point on the finding."""
    import SampleData
    logic = SampleData.SampleDataLogic
    if any(s.sampleName == SAMPLE_NAME for s in logic.sampleDataSourcesByCategory(SAMPLE_CATEGORY)):
        return
    logic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY, sampleName=SAMPLE_NAME, uris=[], fileNames=[], nodeNames=[],
        thumbnailFileName=str(_extensionRoot() / "Resources" / "Icons" / "ShapSegExplain.png"),
        customDownloader=loadDemoSample)


def loadDemoSample(source=None):
    """Sample Data's button: the demo scene, then the module (Explain is one click away)."""
    try:
        logic = ShapSegExplainLogic()
        p, _case = logic.setUpDemoScene()
    except ImportError as e:
        slicer.util.errorDisplay(_("The demo phantom needs {m}; press Install in ShapSeg Explain first.")
                                 .format(m=e.name), windowTitle=_("ShapSeg Explain"))
        return None
    slicer.util.selectModule("ShapSegExplain")
    return [p.inputVolume]



#
# ShapSegExplainWidget
#
class ShapSegExplainWidget(WidgetRegionMixin, WidgetRunMixin, WidgetResultsMixin,
                           ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: parameters bound to the .ui, region and model choices; running and the
    result view from their mixins (ShapSegExplainSlicer/widget_*.py)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._models = []
        self._observedMarkups = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        registerStartupItems()          # a module loaded after start-up gets them here
        uiWidget = slicer.util.loadUI(str(ROOT / "Resources" / "UI" / "ShapSegExplain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = ShapSegExplainLogic()
        self.logic.onEvent = self.onWorkerEvent
        self.logic.onFinished = self.onWorkerFinished

        self.ui.pointPlaceWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup
        self.ui.roiPlaceWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceSingleMarkup
        self.ui.resultSelector.addAttribute("vtkMRMLSegmentationNode", RESULT_ATTRIBUTE)
        self.ui.referenceSegmentSelector.segmentationNodeSelectorVisible = True
        self.ui.regionSegmentSelector.segmentationNodeSelectorVisible = True

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.installButton.connect("clicked(bool)", self.onInstallButton)
        self.ui.modelComboBox.connect("activated(int)", self.onModelChosen)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        self.ui.targetComboBox.connect("currentTextChanged(QString)", self.onTargetChanged)
        self.ui.pointSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.pointPlaceWidget.setCurrentNode)
        self.ui.roiSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.roiPlaceWidget.setCurrentNode)
        self.ui.referenceSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onReferenceChanged)
        self.ui.referenceSegmentSelector.connect("currentSegmentChanged(QString)", self.onReferenceChanged)
        self.ui.regionSegmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onRegionSegmentChanged)
        self.ui.regionSegmentSelector.connect("currentSegmentChanged(QString)", self.onRegionSegmentChanged)
        self.ui.islandComboBox.connect("currentIndexChanged(int)", self.onIslandChanged)
        self.ui.referenceIslandComboBox.connect("currentIndexChanged(int)", self.onReferenceIslandChanged)
        self.ui.resultTableView.connect("selectionChanged()", self.onTableSelection)
        self.ui.openFolderButton.connect("clicked(bool)", self.onOpenFolder)
        self.ui.saveSceneButton.connect("clicked(bool)", self.onSaveScene)

        self.fillModelList()
        self.updateDependencyStatus()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module reload or application exit: never leave a worker running."""
        if self.logic:
            self.logic.cancel()
            self.logic.timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        """A closed scene stops the run: its inputs and overlay are going away."""
        self.logic.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ----- parameter node ----------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        p = self._parameterNode
        if not p.inputVolume:
            p.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not self.logic.validModelPath(p.modelPath) and self._models:
            p.modelPath = pathlib.Path(self._models[0].path)

    def setParameterNode(self, node: ShapSegExplainParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        """What ``connectGui`` cannot do: the target list, the reference segment, the region
        widgets shown, the Apply button and the shown result."""
        p = self._parameterNode
        if p is None:
            return
        self.fillTargets(p.modelPath, p.targetClass)
        with SignalsBlocked(self.ui.referenceSegmentSelector):
            self.ui.referenceSegmentSelector.setCurrentNode(p.referenceSegmentation)
            self.ui.referenceSegmentSelector.setCurrentSegmentID(p.referenceSegmentId)
        point = p.region == Region.POINT
        for w in (self.ui.pointLabel, self.ui.pointSelector, self.ui.pointPlaceWidget, self.ui.snapLabel,
                  self.ui.snapSpinBox):
            w.setVisible(point)
        for w in (self.ui.roiLabel, self.ui.roiSelector, self.ui.roiPlaceWidget):
            w.setVisible(p.region == Region.BOX)
        for w in (self.ui.regionSegmentLabel, self.ui.regionSegmentSelector, self.ui.islandLabel,
                  self.ui.islandComboBox):
            w.setVisible(p.region == Region.SEGMENT)
        with SignalsBlocked(self.ui.regionSegmentSelector):
            self.ui.regionSegmentSelector.setCurrentNode(p.regionSegmentation)
            self.ui.regionSegmentSelector.setCurrentSegmentID(p.regionSegmentId)
        self.fillIslands()
        self.observeMarkups([p.pointNode, p.roiNode])
        self.updateApplyButton()
        self.showResult(p.resultSegmentation)

    def observeMarkups(self, nodes) -> None:
        """Placing, moving or removing a point, or moving the box, enables or disables Explain
        (they are not parameters). Adding or moving a control point does not send
        ``ModifiedEvent``: these are the events Slicer's own modules observe."""
        nodes = [n for n in nodes if n is not None]
        for old in self._observedMarkups:
            if old not in nodes:
                for event in markupsEvents(old):
                    self.removeObserver(old, event, self.onMarkupsModified)
        for n in nodes:
            for event in markupsEvents(n):
                if not self.hasObserver(n, event, self.onMarkupsModified):
                    self.addObserver(n, event, self.onMarkupsModified)
        self._observedMarkups = nodes

    def onMarkupsModified(self, caller=None, event=None) -> None:
        self.updateApplyButton()

    def updateApplyButton(self) -> None:
        if self.logic.running:
            self.ui.applyButton.text, self.ui.applyButton.enabled = _("Cancel"), True
            self.ui.applyButton.toolTip = _("Stop the running explanation (nothing is written).")
            return
        self.ui.applyButton.text = _("Explain")
        problem = self.logic.whyCannotRun(self._parameterNode)
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or _("Run the explanation in the background.")

    # ----- models and targets ------------------------------------------------------------------
    def fillModelList(self) -> None:
        self._models = self.logic.findModels()
        with SignalsBlocked(self.ui.modelComboBox):
            self.ui.modelComboBox.clear()
            for m in self._models:
                self.ui.modelComboBox.addItem(m.label, str(m.path))
            self.ui.modelComboBox.addItem(_("Other nnU-Net results folder..."), "")

    def onModelChosen(self, index: int) -> None:
        path = self.ui.modelComboBox.itemData(index)
        if path and self._parameterNode:
            self._parameterNode.modelPath = pathlib.Path(path)
        elif not path:
            self.ui.modelPathLineEdit.browse()

    def onModelPathChanged(self, text: str) -> None:
        index = self.ui.modelComboBox.findData(text)
        with SignalsBlocked(self.ui.modelComboBox):
            self.ui.modelComboBox.setCurrentIndex(index if index >= 0 else self.ui.modelComboBox.count - 1)

    def fillTargets(self, modelPath, current: str) -> None:
        classes = self.logic.modelClasses(modelPath)
        with SignalsBlocked(self.ui.targetComboBox):
            if [self.ui.targetComboBox.itemText(i) for i in range(self.ui.targetComboBox.count)] != classes:
                self.ui.targetComboBox.clear()
                self.ui.targetComboBox.addItems(classes)
            index = self.ui.targetComboBox.findText(current)
            self.ui.targetComboBox.setCurrentIndex(index)
        if index < 0 and classes and self._parameterNode:
            self._parameterNode.targetClass = classes[0]

    def onTargetChanged(self, text: str) -> None:
        if self._parameterNode and text:
            self._parameterNode.targetClass = text

    # ----- dependencies ------------------------------------------------------------------------
    def updateDependencyStatus(self) -> None:
        old = unsupportedSlicer()
        if old:                      # nothing is offered that would fail: no install, Explain disabled
            self.ui.dependencyLabel.text, self.ui.dependencyLabel.visible = old, True
            self.ui.installButton.visible = False
            return
        missing = dependencies.missing()
        self.ui.dependencyLabel.text = "" if not missing else _(
            "Needs Python packages that Slicer does not have yet: {packages}.").format(packages=", ".join(missing))
        self.ui.dependencyLabel.visible = self.ui.installButton.visible = bool(missing)

    def onInstallButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Installing the Python packages failed."), waitCursor=True):
            self.logic.installDependencies(askConfirmation=True)
        self.updateDependencyStatus()
        self.updateApplyButton()

    # ----- running -----------------------------------------------------------------------------
    # ----- results -----------------------------------------------------------------------------
#
# ShapSegExplainLogic
#
class ShapSegExplainLogic(DemoSceneMixin, ExportsMixin, InstallerMixin, ResultsMixin,
                          ScriptedLoadableModuleLogic):
    """The worker's control (start, poll, cancel, finish) here; exports, installing, the result
    in the scene and the demo scene from their mixins (ShapSegExplainSlicer/). Usable without the
    widget (the self-test drives it directly). ``workerFactory`` can be replaced in tests."""

    def __init__(self, workerFactory=WorkerProcess) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.workerFactory = workerFactory
        self.worker = None
        self.state = None
        self.run = None
        self._islands = {}           # segments' pieces on the CT, cached (``pieceChoices``)
        self.trustedModelFolders: set[str] = set()   # the user allowed full unpickling (asked once per folder)
        self.onEvent = None          # callback(event, state)
        self.onFinished = None       # callback(state, resultSegmentationNode or None)
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.connect("timeout()", self.poll)
        self._explanations = {}

    def getParameterNode(self) -> ShapSegExplainParameterNode:
        return ShapSegExplainParameterNode(super().getParameterNode())

    # ----- models ------------------------------------------------------------------------------
    def demoModelPath(self) -> pathlib.Path:
        return DEMO_MODEL

    def findModels(self):
        return find_models(self.demoModelPath())

    @staticmethod
    def validModelPath(path) -> bool:
        return is_model_folder(path)

    def modelClasses(self, path) -> list[str]:
        return list(model_classes(pathlib.Path(path))) if self.validModelPath(path) else []

    # ----- dependencies ------------------------------------------------------------------------
    # ----- checks ------------------------------------------------------------------------------
    def whyCannotRun(self, p: ShapSegExplainParameterNode | None) -> str | None:
        """None when the panel describes a runnable job, else what is missing, for the tooltip."""
        if p is None:
            return _("No parameter node.")
        old = unsupportedSlicer()
        if old:
            return old
        if not p.inputVolume:
            return _("Choose the CT volume.")
        if not self.validModelPath(p.modelPath):
            return _("Choose an nnU-Net results folder (with dataset.json).")
        if not p.targetClass:
            return _("Choose the target class.")
        if p.region == Region.POINT and not (p.pointNode and p.pointNode.GetNumberOfDefinedControlPoints()):
            return _("Place a point on the finding.")
        if p.region == Region.BOX and not (p.roiNode and p.roiNode.GetNumberOfDefinedControlPoints()):
            return _("Place a box (ROI) around the region.")
        if p.region == Region.SEGMENT:
            if not (p.regionSegmentation and p.regionSegmentId):
                return _("Choose the segment to explain.")
            _choices, problem = self.islandChoices(p)
            if problem:
                return problem
        return None

    # ----- a segment as the region -------------------------------------------------------------
    # ----- starting ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None and not self.worker.finished

    def runsRoot(self) -> pathlib.Path:
        return pathlib.Path(slicer.app.temporaryPath) / "ShapSegExplain"

    def start(self, p: ShapSegExplainParameterNode) -> pathlib.Path:
        """Export the inputs into a fresh run folder, write the job and start the worker."""
        problem = self.whyCannotRun(p)
        if problem:
            raise ShapSegError(problem, "bad_input")
        if self.running:
            raise ShapSegError(_("An explanation is already running; cancel it first."), "busy")
        python = self.pythonExecutable()
        label = run_label(p.inputVolume.GetName(), p.targetClass, p.value.value, p.players.value)
        folder = new_run_folder(self.runsRoot(), label)
        try:
            request = self.exportInputs(p, folder)
            jobPath, job = prepare_run(folder, request)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.run = LiveRun(folder, job, label)
        self.startWorker(python, jobPath)
        return folder

    def startWorker(self, python: str, jobPath) -> None:
        self.state = RunState()
        self.worker = self.workerFactory(worker_command(python, jobPath), cwd=str(package_root()),
                                         env=self.workerEnvironment()).start()
        self.timer.start()

    def savedCoalitions(self) -> int:
        """After the worker died without a result: the coalitions its journal keeps (0: none)."""
        if self.running or self.run is None or self.state.error_code != "worker_crashed":
            return 0
        return saved_coalitions(self.run.job)

    def resume(self) -> pathlib.Path:
        """Start the worker again on the interrupted run's folder; it goes on from the journal
        (φ as if it had never stopped)."""
        if not self.savedCoalitions():
            raise ShapSegError(_("There is no interrupted run to resume."), "nothing_to_resume")
        jobPath, job = resume_run(self.run.folder, self.run.job)
        self.run = LiveRun(self.run.folder, job, self.run.label)
        self.startWorker(self.pythonExecutable(), jobPath)
        return self.run.folder

    def pythonExecutable(self) -> str:
        """Slicer's own Python (``PythonSlicer``, a launcher that sets Slicer's environment)."""
        found = find_python_slicer(os.path.dirname(slicer.app.applicationFilePath()))
        if not found:
            raise ShapSegError(_("PythonSlicer was not found next to Slicer."), "no_python")
        return found

    def workerEnvironment(self) -> dict:
        return slicer.util.startupEnvironment()

    # ----- while it runs -----------------------------------------------------------------------
    def poll(self) -> None:
        """Called by the timer: fold new events into the state, update the overlay."""
        if self.worker is None:
            self.timer.stop()
            return
        for event in self.worker.poll():
            self.state.update(event)
            try:
                self.handleEvent(event)
            except Exception:           # a display problem must not kill the polling
                logging.exception("ShapSegExplain: could not show an event")
            if self.onEvent:
                self.onEvent(event, self.state)
        if self.worker.finished:
            self.timer.stop()
            self.finish()

    def handleEvent(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "players" and event.get("preview"):
            self.removePreview()            # a coarse-to-fine run sends the players of every level
            self.run.players = event["players"]
            self.run.preview = self.loadPreview(event["preview"], event["players"])
        elif kind == "partial" and self.run.preview is not None:
            self.colorSegments(self.run.preview, self.run.players, event["phi"], event.get("se"))

    # ----- stopping and finishing --------------------------------------------------------------
    def cancel(self) -> float:
        """Stop the worker and its children (under a second); remove the run's files and overlay."""
        if not self.running:
            return 0.0
        seconds = self.worker.cancel()
        self.timer.stop()
        self.state.update({"event": "cancelled", "message": "cancelled by the user"})
        self.removePreview()
        shutil.rmtree(self.run.folder, ignore_errors=True)
        self.worker.poll()              # the process is gone: this drains and closes its output files
        self.worker.finished = True
        if self.onFinished:
            self.onFinished(self.state, None)
        return seconds

    def removePreview(self) -> None:
        if self.run and self.run.preview is not None:
            slicer.mrmlScene.RemoveNode(self.run.preview)
            self.run.preview = None

    def finish(self) -> None:
        """The worker has ended: load the result, or keep the log for a failed run."""
        self.removePreview()
        resultNode = None
        if self.state.outcome == "result":
            try:
                resultNode = self.loadResult(pathlib.Path(self.run.job.out), self.run.label)
                shutil.rmtree(self.run.folder / "inputs", ignore_errors=True)   # the CT copy is not needed now
            except Exception as e:          # a result Slicer cannot load is a failed run, not a stuck panel
                logging.exception("ShapSegExplain could not load the result")
                self.state.update({"event": "error", "code": "load_failed",
                                   "message": f"the result could not be loaded: {e}"})
        if self.state.outcome == "error":
            (self.run.folder / "worker.log").write_text("\n".join(self.state.log))
        if self.onFinished:
            self.onFinished(self.state, resultNode)

    # ----- results -----------------------------------------------------------------------------

#
# ShapSegExplainTest
#
class ShapSegExplainTest(ShapSegExplainSelfTest):
    """The self-test (ShapSegExplainSlicer/selftest.py): the start-up registrations, the demo
    case end to end through the logic, and a cancel."""
    logicClass = ShapSegExplainLogic
