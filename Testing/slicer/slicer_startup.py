"""Slicer's start-up by the rules of Slicer's own sources, played on the installed module.

Not a stand-in shaped after the module: each rule is what Slicer does at tag v5.10.0 (Slicer
a2b6d08, CTK dd4caea), cited by file and line, written here in our own code. Run as a script
(``python slicer_startup.py INSTALLED_MODULE_DIR [--again MODULE]``) in a fresh process; it prints one JSON line.

R1  A module folder's top-level ``*.py`` files (not recursive, not a ``#!`` CLI script) are each
    a module: ``qSlicerAbstractModuleFactoryManager.cxx:275-283``,
    ``qSlicerScriptedLoadableModuleFactory.cxx:182-211``, ``qSlicerUtils.cxx:71-85``.
R2  Its name is the file's ``QFileInfo::baseName`` (up to the first dot):
    CTK ``ctkAbstractFileBasedFactory.tpp:164-167``.
R3  ``loadSourceAsModule`` puts the module in ``sys.modules[name]`` and runs the whole file
    (``qSlicerScriptedUtils.cxx:37-61``); class ``name`` must exist and is called with the C++
    module as ``parent`` (``qSlicerScriptedLoadableModule.cxx:121-181``). A failure is listed in
    "The following modules failed to be instantiated" and, under ``--testing``, Slicer exits with
    failure (``qSlicerApplicationHelper.hxx:257-272``); the half-run module stays in ``sys.modules``.
R4  On ``sys.path`` then: the launcher's ``qt-scripted-modules`` (Slicer's own scripted packages,
    ``SlicerBlockCTKAppLauncherSettings.cmake:314-321``) and each extension module's folder
    (``qSlicerScriptedLoadableModuleFactory.cxx:44-65``). ``SubjectHierarchyPlugins/`` itself
    reaches ``sys.path`` only when that package is imported (its ``__init__.py:8-18``).
R5  Every module is instantiated before ``startupCompleted()`` (``qSlicerApplication.h:236-246``).
R6  ``SampleDataSource.__init__`` takes ``len`` of ``uris``, ``fileNames`` and the rest; a string is
    one entry, ``None`` raises ``TypeError`` (``SampleData.py:146-215``); registration builds one
    (``SampleData.py:510-561``).
R7  ``qSlicerSubjectHierarchyScriptedPlugin::setPythonSource``: class ``baseName`` (+
    "SubjectHierarchyPlugin" unless it ends so) from ``sys.modules[baseName]`` or the file run
    as that module, called with the C++ plugin; its Python methods are collected by ``hasattr``
    only after ``__init__`` returns; default name "UnnamedScriptedPlugin"
    (``qSlicerSubjectHierarchyScriptedPlugin.cxx:118,147-216``, ``qSlicerScriptedUtils.cxx:206-216``).
    The base class's ``__init__`` registers at once (``AbstractScriptedSubjectHierarchyPlugin.py:31-40``).
R8  ``registerPlugin`` refuses a name already registered and reads ``viewContextMenuActions()``
    then (``qSlicerSubjectHierarchyPluginHandler.cxx:133-154``).
R9  A right-click in a slice view passes the *scene's* item and ``eventData`` with ``ViewNodeID``
    and ``WorldPosition``; each plugin's registered view actions are hidden, then its
    ``showViewContextMenuActionsForItem`` decides; the visible ones form the menu
    (``qSlicerSubjectHierarchyPluginLogic.cxx:536-613``).
R10 The module's ``parent`` is the C++ ``qSlicerScriptedLoadableModule``: the properties its header
    redeclares with WRITE may be set (``qSlicerScriptedLoadableModule.h:37-48``); ``name``, ``path``,
    ``logo`` and the rest of ``qSlicerAbstractCoreModule.h:78-183`` / ``qSlicerAbstractModule.h:45``
    are read-only, and PythonQt raises ``AttributeError`` on a write to one ("... is not writable")
    and on any new attribute of a C++ object ("creating new attributes on C++ objects is not
    allowed"; PythonQt v3.6.1 ``PythonQtInstanceWrapper.cpp:608-733``, which CTK's pin patches).
    The base class ``ScriptedLoadableModule.__init__`` sets title, categories, dependencies,
    contributors, helpText, acknowledgementText and reads ``path`` (``ScriptedLoadableModule.py:23-41``).
"""
from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import textwrap
import types
from pathlib import Path

SCENE_ITEM = 1                          # the subject hierarchy's scene item
SLICE_NODE = "vtkMRMLSliceNodeRed"
SEGMENT_BOX = (0.0, 10.0)               # where the one visible segment is, in every axis (RAS mm)
PLUGIN_METHODS = ("roleForPlugin", "canOwnSubjectHierarchyItem", "itemContextMenuActions",
                  "viewContextMenuActions", "sceneContextMenuActions", "showContextMenuActionsForItem",
                  "showViewContextMenuActionsForItem")

# Slicer's own Python packages on the launcher's path (R4, R6, R7), as they behave
SLICER_PACKAGES = {
    "SubjectHierarchyPlugins/__init__.py": '''
        import os, sys
        here = os.path.dirname(os.path.realpath(__file__))
        sys.path.append(here)                                   # only now (R4)
        for f in sorted(os.listdir(here)):
            if f.endswith(".py") and f != "__init__.py":
                exec(f"from {f[:-3]} import *")
        ''',
    "SubjectHierarchyPlugins/AbstractScriptedSubjectHierarchyPlugin.py": '''
        import slicer
        class AbstractScriptedSubjectHierarchyPlugin:
            def __init__(self, scriptedPlugin):
                self.scriptedPlugin = scriptedPlugin
                self.register()                                 # inside the constructor (R7)
            def register(self):
                slicer.qSlicerSubjectHierarchyPluginHandler.instance().registerPlugin(self.scriptedPlugin)
        ''',
    "SampleData.py": '''
        import slicer
        class SampleDataSource:
            def __init__(self, sampleName=None, uris=None, fileNames=None, nodeNames=None, checksums=None,
                         loadFiles=None, customDownloader=None, thumbnailFileName=None, loadFileTypes=None,
                         loadFileProperties=None):
                self.sampleName, self.customDownloader = sampleName, customDownloader
                if isinstance(uris, (list, tuple)):
                    n = len(uris)
                    loadFileTypes = [loadFileTypes] * n if loadFileTypes is None or isinstance(loadFileTypes, str) else loadFileTypes
                    nodeNames, loadFiles, checksums = (v if v is not None else [None] * n for v in (nodeNames, loadFiles, checksums))
                elif isinstance(uris, str):
                    uris, fileNames, nodeNames, loadFiles, loadFileTypes, checksums = (
                        [v] for v in (uris, fileNames, nodeNames, loadFiles, loadFileTypes, checksums))
                if not len(uris) == len(fileNames) == len(nodeNames) == len(loadFiles) == len(loadFileTypes) == len(checksums):
                    raise ValueError("All fields of sample data source must have the same length")
        class SampleDataLogic:
            @staticmethod
            def sampleDataSourcesByCategory(category=None):
                return slicer.modules.sampleDataSources.get(category, [])
            @staticmethod
            def registerCustomSampleDataSource(category="Custom", sampleName=None, uris=None, fileNames=None,
                                               nodeNames=None, customDownloader=None, thumbnailFileName=None,
                                               loadFileTypes=None, loadFiles=None, loadFileProperties={}, checksums=None):
                source = SampleDataSource(sampleName=sampleName, uris=uris, fileNames=fileNames, nodeNames=nodeNames,
                                          thumbnailFileName=thumbnailFileName, loadFileTypes=loadFileTypes,
                                          loadFiles=loadFiles, loadFileProperties=loadFileProperties,
                                          checksums=checksums, customDownloader=customDownloader)
                slicer.modules.sampleDataSources.setdefault(category, []).append(source)
        ''',
}


# ----- Qt / VTK objects the rules touch ------------------------------------------------------
class Any:
    """Whatever else Qt, CTK or VTK would return: accepts every call."""
    def __init__(self, *a, **k):
        pass

    def __getattr__(self, name):
        return Any()

    def __call__(self, *a, **k):
        return Any()


class QAction:
    def __init__(self, text="", parent=None):
        self.text, self.objectName, self.visible, self._slots = text, "", True, []

    def connect(self, signal, slot):
        self._slots.append(slot)

    def trigger(self):
        for slot in self._slots:
            slot()


class StringArray:
    def __init__(self):
        self.values = []

    def InsertNextValue(self, v):
        self.values.append(v)

    def GetNumberOfValues(self):
        return len(self.values)

    def GetValue(self, i):
        return self.values[i]


# ----- the subject hierarchy (R7, R8, R9) ---------------------------------------------------
class ScriptedPlugin:
    """``qSlicerSubjectHierarchyScriptedPlugin``."""
    def __init__(self, parent=None):
        self.name, self.methods, self.instance = "UnnamedScriptedPlugin", {}, None

    def setPythonSource(self, path: str) -> bool:
        base = Path(path).name.split(".")[0]
        cls_name = base if base.endswith("SubjectHierarchyPlugin") else base + "SubjectHierarchyPlugin"
        module = sys.modules.get(base)
        if module is None or not hasattr(module, cls_name):
            module = load_source_as_module(base, Path(path))
        self.instance = getattr(module, cls_name)(self)
        self.methods = {m: getattr(self.instance, m) for m in PLUGIN_METHODS if hasattr(self.instance, m)}
        return True

    def viewContextMenuActions(self):
        return list(self.methods["viewContextMenuActions"]()) if "viewContextMenuActions" in self.methods else []

    def self(self):
        return self.instance


class SegmentsPlugin:
    """Slicer's C++ "Segments" plugin: it owns segment items only (the scene item is none)."""
    name, methods = "Segments", {}

    def canOwnSubjectHierarchyItem(self, itemID):
        return 0.0

    def viewContextMenuActions(self):
        return []


class PluginHandler:
    """``qSlicerSubjectHierarchyPluginHandler``: plugins and the view actions read at registration."""
    _instance = None

    def __init__(self):
        self.plugins, self.view_actions, self.refused = {}, {}, []
        self.registerPlugin(SegmentsPlugin())

    @classmethod
    def instance(cls):
        cls._instance = cls._instance or cls()
        return cls._instance

    def registerPlugin(self, plugin) -> bool:
        if plugin.name in self.plugins:
            self.refused.append(plugin.name)            # "... is already registered"
            return False
        self.plugins[plugin.name] = plugin
        self.view_actions[plugin.name] = plugin.viewContextMenuActions()
        return True

    def pluginByName(self, name):
        return self.plugins.get(name)

    def view_menu(self, event_data: dict) -> list:
        """The actions a right-click in a slice view shows (R9)."""
        shown = []
        for name, plugin in self.plugins.items():
            for action in self.view_actions[name]:
                action.visible = False
            show = plugin.methods.get("showViewContextMenuActionsForItem")
            if show is not None:
                show(SCENE_ITEM, event_data)
            shown += [a for a in self.view_actions[name] if a.visible]
        return shown


# ----- a scene with one segmentation, visible in the red slice ------------------------------
class Node:
    def __init__(self, node_id: str, classes: tuple[str, ...], **attrs):
        self.id, self.classes, self.attrs = node_id, classes, attrs

    def GetID(self):
        return self.id

    def GetName(self):
        return self.id

    def IsA(self, cls):
        return cls in self.classes

    def GetAttribute(self, name):
        return self.attrs.get(name)

    def GetDisplayNode(self):
        return self.attrs.get("display")

    def GetVisibility(self):
        return 1


class SegmentationsManager2D:
    """``vtkMRMLSegmentationsDisplayableManager2D.GetVisibleSegmentsForPosition``."""
    def GetVisibleSegmentsForPosition(self, ras, display, ids):
        if display is not None and all(SEGMENT_BOX[0] <= x <= SEGMENT_BOX[1] for x in ras):
            ids.InsertNextValue("Segment_1")


def scene() -> dict[str, Node]:
    display = Node("vtkMRMLSegmentationDisplayNode1", ("vtkMRMLSegmentationDisplayNode",))
    return {SLICE_NODE: Node(SLICE_NODE, ("vtkMRMLSliceNode",)),
            "Prediction": Node("Prediction", ("vtkMRMLSegmentationNode",), display=display)}


# ----- the slicer, qt, ctk, vtk modules -------------------------------------------------------
class ScriptedModule:
    """The C++ module a scripted module gets as ``parent`` (R10): only its writable properties
    may be set; a read-only one or a new name raises as PythonQt does."""
    WRITABLE = frozenset({"title", "categories", "contributors", "associatedNodeTypes", "helpText",
                          "acknowledgementText", "extensions", "icon", "hidden", "dependencies", "index",
                          "widgetRepresentationCreationEnabled", "objectName"})
    READ_ONLY = frozenset({"name", "slicerWikiUrl", "defaultDocumentationLink", "path", "isInstalled",
                           "isBuiltIn", "logo"})

    def __init__(self, path: Path):
        object.__setattr__(self, "path", str(path))

    def __setattr__(self, name, value):
        if name in self.READ_ONLY:
            raise AttributeError(f"Property '{name}' of qSlicerScriptedLoadableModule object is not writable")
        if name not in self.WRITABLE:
            raise AttributeError(f"'{name}' does not exist on qSlicerScriptedLoadableModule and creating new "
                                 "attributes on C++ objects is not allowed")
        object.__setattr__(self, name, value)

    def __getattr__(self, name):          # an unset writable property reads as Qt's default
        if name in self.WRITABLE:
            return None
        raise AttributeError(name)


def install_slicer(record: dict) -> types.ModuleType:
    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    nodes = scene()

    class ScriptedLoadableModule:
        def __init__(self, parent):         # the real base's writes and read (R10)
            self.parent = parent
            parent.title = "Untitled Module"
            parent.categories, parent.dependencies, parent.contributors = [], [], ["Andras Lasso (PerkLab)"]
            parent.helpText = parent.acknowledgementText = ""
            _ = parent.path

    def base(name):
        return type(name, (), {"__init__": lambda self, *a, **k: None})

    slots: dict[str, list] = {}
    app = types.SimpleNamespace(
        connect=lambda signal, slot: slots.setdefault(signal, []).append(slot), slots=slots,
        majorVersion=5, minorVersion=10, temporaryPath=tempfile.gettempdir(),
        applicationLogic=lambda: types.SimpleNamespace(
            GetViewDisplayableManagerByClassName=lambda view, cls: SegmentationsManager2D()
            if cls == "vtkMRMLSegmentationsDisplayableManager2D" else None))
    widget = types.SimpleNamespace(explainSegment=lambda node, segment: record["explained"].append([node.GetID(), segment]))
    modules = types.SimpleNamespace(sampleDataSources={}, shapsegexplain=types.SimpleNamespace(
        widgetRepresentation=lambda: types.SimpleNamespace(self=lambda: widget)))
    util = mod("slicer.util", VTKObservationMixin=base("VTKObservationMixin"), selectModule=lambda name: None,
               getNodesByClass=lambda cls: [n for n in nodes.values() if n.IsA(cls)])
    slicer = mod("slicer", app=app, modules=modules, util=util,
                 mrmlScene=types.SimpleNamespace(GetNodeByID=lambda i: nodes.get(i)),
                 qSlicerSubjectHierarchyScriptedPlugin=ScriptedPlugin,
                 qSlicerSubjectHierarchyPluginHandler=PluginHandler,
                 **{n: type(n, (), {}) for n in ("vtkMRMLMarkupsFiducialNode", "vtkMRMLMarkupsROINode",
                                                  "vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode")})
    slicer.i18n = mod("slicer.i18n", tr=lambda s: s, translate=lambda ctx, s: s)
    mod("slicer.parameterNodeWrapper", WithinRange=lambda lo, hi: None, parameterNodeWrapper=lambda cls: cls)
    mod("slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
        **{n: base(n) for n in ("ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
                                "ScriptedLoadableModuleWidget")})
    mod("qt", QAction=QAction, __getattr__=lambda name: Any)
    mod("ctk", __getattr__=lambda name: Any)
    mod("vtk", vtkStringArray=StringArray, __getattr__=lambda name: Any())
    return slicer


def write_slicer_packages(root: Path) -> Path:
    scripted = root / "qt-scripted-modules"
    for rel, text in SLICER_PACKAGES.items():
        (scripted / rel).parent.mkdir(parents=True, exist_ok=True)
        (scripted / rel).write_text(textwrap.dedent(text))
    return scripted


# ----- the factory (R1-R3) and start-up (R5) ------------------------------------------------
def load_source_as_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module                 # before the source runs: a failure leaves it half-run
    spec.loader.exec_module(module)
    return module


def module_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".py"
                  and not p.read_text(errors="replace").startswith("#!"))


def instantiate(folder: Path) -> list[list[str]]:
    """Every module of the folder, as the factory does; [name, error] per failure."""
    sys.path.insert(0, str(folder))
    failed = []
    for path in module_files(folder):
        name = path.name.split(".")[0]
        try:
            module = load_source_as_module(name, path)
            if not hasattr(module, name):
                raise LookupError(f"class {name} was not found in file {path}")
            getattr(module, name)(ScriptedModule(path))
        except Exception as e:     # Slicer prints the traceback and lists the module
            failed.append([name, f"{type(e).__name__}: {e}"])
    return failed


def start(folder: Path) -> dict:
    record: dict = {"explained": []}
    slicer = install_slicer(record)
    sys.path.insert(0, str(write_slicer_packages(Path(tempfile.mkdtemp()))))
    record["failed"] = instantiate(folder)
    record["startup_errors"] = []
    for slot in slicer.app.slots.get("startupCompleted()", []):
        try:
            slot()
        except Exception as e:
            record["startup_errors"].append(f"{type(e).__name__}: {e}")
    record.update(observe(slicer))
    return record


def observe(slicer) -> dict:
    """What a user would see: samples, plugins and their view actions, the slice-view menu."""
    handler = PluginHandler.instance()
    inside, outside = {"ViewNodeID": SLICE_NODE, "WorldPosition": [5.0, 5.0, 5.0]}, \
        {"ViewNodeID": SLICE_NODE, "WorldPosition": [50.0, 5.0, 5.0]}
    menu = handler.view_menu(inside)
    for action in menu:
        action.trigger()
    return {"samples": {c: [s.sampleName for s in v] for c, v in slicer.modules.sampleDataSources.items()},
            "plugins": {n: [a.objectName for a in acts] for n, acts in handler.view_actions.items() if n != "Segments"},
            "refused": list(handler.refused),
            "menu_on_segment": [a.objectName for a in menu],
            "menu_off_segment": [a.objectName for a in handler.view_menu(outside)]}


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    record = start(folder)
    if len(argv) > 2 and argv[1] == "--again":     # a reload or a late panel set-up registers again
        sys.modules[argv[2]].registerStartupItems()
        record["again"] = observe(sys.modules["slicer"])
    print(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
