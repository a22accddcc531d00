"""The Slicer module on real MRML: ``slicer-core`` (PyPI: Slicer's real vtkMRMLScene, markups,
segmentations, tables and ``slicer.util``; no Qt, no ``slicer.app``).

These tests run in their own environment (``.venv-mrml``, built by ``make venv``): the wheel
installs a top-level ``slicer`` package, which collides with the unrelated ``slicer`` package
shap depends on in the main environment. ``Testing/slicer/test_real_mrml.py`` runs them from
the main suite.

Shims, only where slicer-core has no counterpart (all Qt or the application):
``qt``, ``ctk`` (GUI toolkits), ``slicer.app`` (the Qt application: temporary path, version,
and the IO manager ``slicer.util.exportNode`` writes through), ``slicer.i18n`` (Qt translation),
``slicer.parameterNodeWrapper`` and
``slicer.ScriptedLoadableModule`` (Slicer's Python GUI packages, not in the wheel).
Everything else the tested paths touch is real: the scene, nodes, events, observers
(``slicer.util.VTKObservationMixin``), ``slicer.util.NodeModify``, storage nodes, the
segmentations logic; the segmentation converter rules are registered as Slicer's
Segmentations module does at startup.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "ShapSegExplain" / "ShapSegExplain.py"


def _module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _base(name: str) -> type:
    return type(name, (), {"__init__": lambda self, *a, **k: None})


class _Inert:
    """A Qt object stand-in whose every method does nothing."""
    def __init__(self, *a, **k):
        pass

    def __getattr__(self, name):
        return lambda *a, **k: None


def _install_shims() -> None:
    import slicer
    _module("qt", QTimer=_Inert, QObject=_Inert)
    _module("ctk")
    slicer.i18n = _module("slicer.i18n", tr=lambda s: s, translate=lambda ctx, s: s)
    slicer.parameterNodeWrapper = _module("slicer.parameterNodeWrapper", WithinRange=lambda lo, hi: None,
                                          parameterNodeWrapper=lambda cls: cls)
    slicer.ScriptedLoadableModule = _module("slicer.ScriptedLoadableModule", **{n: _base(n) for n in (
        "ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
        "ScriptedLoadableModuleWidget")})


class _IOManager:
    """``slicer.app.coreIOManager()`` for ``slicer.util.exportNode``: Slicer's IO manager writes
    a node through its default storage node, which is what this does (the storage nodes are real)."""

    def extractKnownExtension(self, filename, node):
        return "." + filename.split(".", 1)[1] if "." in filename else ""

    def fileWriterExtensions(self, node):
        return ["NRRD (.nrrd)", "NRRD (.nhdr)", "NIfTI (.nii.gz)", "NIfTI (.nii)"]

    def exportNodes(self, nodeIDs, fileNames, properties, hardenTransform, userMessages):
        import slicer
        ok = True
        for nodeID, fileName in zip(nodeIDs, fileNames):
            node = slicer.mrmlScene.GetNodeByID(nodeID)
            if hardenTransform and node.GetParentTransformNode() is not None:
                raise NotImplementedError("the shim writes untransformed nodes only")
            storage = node.CreateDefaultStorageNode()
            storage.SetFileName(fileName)
            storage.SetUseCompression(int(properties.get("useCompression", 1)))
            ok &= bool(storage.WriteData(node))
        return ok


@pytest.fixture(scope="session")
def module():
    """ShapSegExplain.py loaded against real slicer-core (and the shims above)."""
    import slicer
    assert hasattr(slicer, "vtkMRMLScene"), "this is not slicer-core's slicer package"
    _install_shims()
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()    # what the Segmentations module does at startup
    factory.RegisterConverterRule(slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule())
    factory.RegisterConverterRule(slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule())
    slicer.mrmlScene = slicer.vtkMRMLScene()
    io = _IOManager()
    slicer.app = types.SimpleNamespace(temporaryPath="/tmp", majorVersion=5, minorVersion=12, coreIOManager=lambda: io)
    sys.path.insert(0, str(MODULE.parent))              # Slicer puts the module's folder on sys.path
    spec = importlib.util.spec_from_file_location("ShapSegExplain_real_mrml", MODULE)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def new_scene():
    """A real scene with what the Markups module registers at start-up in Slicer (its JSON
    storage nodes: without them a markups node has no storage and a bundle drops its data)."""
    import slicer
    scene = slicer.vtkMRMLScene()
    for cls in ("vtkMRMLMarkupsJsonStorageNode", "vtkMRMLMarkupsROIJsonStorageNode"):
        scene.RegisterNodeClass(getattr(slicer, cls)())
    return scene


@pytest.fixture
def scene(module, tmp_path):
    """A fresh real scene as ``slicer.mrmlScene`` (and the app's temporary path in tmp_path)."""
    import slicer
    slicer.mrmlScene = new_scene()
    slicer.app.temporaryPath = str(tmp_path)
    return slicer.mrmlScene
