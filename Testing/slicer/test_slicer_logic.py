"""The module's Logic driven as its timer drives it, with the real worker, on a stand-in for
the few Slicer calls it makes (export a node, the temp folder, the startup environment, a
timer). Scene-drawing methods (preview, colours, result loading) are recorded instead of
drawn; the self-test covers them inside Slicer. What this checks is the orchestration:
start → exports → job → worker → events → live overlay calls → finish or cancel, and what
is left on disk in each case."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import synthetic_ct

MODULE = Path(__file__).resolve().parents[2] / "ShapSegExplain" / "ShapSegExplain.py"


class Timer:
    def __init__(self):
        self.active, self.callback = False, None

    def setInterval(self, ms):
        pass

    def connect(self, signal, callback):
        self.callback = callback

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


class Scene:
    def __init__(self):
        self.removed = []

    def RemoveNode(self, node):
        self.removed.append(node)


def install_fake_slicer(monkeypatch, tmp_path):
    """Stub modules just rich enough for the Logic's run path."""
    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    def base(name):
        return type(name, (), {"__init__": lambda self, *a, **k: None})
    nodes = {n: type(n, (), {}) for n in ("vtkMRMLMarkupsFiducialNode", "vtkMRMLMarkupsROINode",
                                          "vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode")}
    scene = Scene()
    util = mod("slicer.util", VTKObservationMixin=base("VTKObservationMixin"),
               exportNode=lambda node, filename, properties=None, world=False: node.export(filename),
               startupEnvironment=lambda: dict(os.environ), NodeModify=lambda node: contextlib.nullcontext())
    slicer = mod("slicer", **nodes, app=types.SimpleNamespace(temporaryPath=str(tmp_path / "slicer-temp")),
                 mrmlScene=scene, util=util)
    slicer.i18n = mod("slicer.i18n", tr=lambda s: s, translate=lambda ctx, s: s)
    mod("slicer.parameterNodeWrapper", WithinRange=lambda lo, hi: None, parameterNodeWrapper=lambda cls: cls)
    mod("slicer.ScriptedLoadableModule", **{n: base(n) for n in (
        "ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
        "ScriptedLoadableModuleWidget")})
    mod("qt", QTimer=Timer)
    mod("ctk")
    mod("vtk")
    monkeypatch.syspath_prepend(str(MODULE.parent))      # Slicer puts the module's folder on sys.path (R4)
    # each test's stubs differ: the module drops its parts' cached imports itself (as for Slicer's Reload)
    spec = importlib.util.spec_from_file_location("ShapSegExplain_under_test", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, scene


class Volume:
    def __init__(self, image):
        self.image = image

    def GetName(self):
        return "CT 1"

    def export(self, filename):
        sitk.WriteImage(self.image, filename)


class Box:
    def __init__(self, bounds):
        self.bounds = bounds

    def GetNumberOfDefinedControlPoints(self):
        return 1

    def GetRASBounds(self, out):
        out[:] = self.bounds


def ras_bounds(image, lo_ijk, hi_ijk) -> list[float]:
    pts = [image.TransformContinuousIndexToPhysicalPoint([float(v) for v in c])
           for c in (np.array(lo_ijk) - 0.5, np.array(hi_ijk) + 0.5)]
    ras = np.array([(-x, -y, z) for x, y, z in pts])
    lo, hi = ras.min(0), ras.max(0)
    return [lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]]


@pytest.fixture
def logic_and_params(monkeypatch, tmp_path, model_dirs):
    m, scene = install_fake_slicer(monkeypatch, tmp_path)

    class RecordingLogic(m.ShapSegExplainLogic):
        """Draws nothing: records what it would have drawn."""
        def __init__(self):
            super().__init__()
            self.drawn = {"preview": [], "colors": [], "result": []}

        def pythonExecutable(self):
            return sys.executable

        def loadPreview(self, path, players):
            self.drawn["preview"].append((path, len(players), os.path.isfile(path)))
            return f"preview node for {len(players)} players"

        def colorSegments(self, node, players, phi, se=None):
            self.drawn["colors"].append((node, len(players), list(phi)))

        def loadResult(self, out, label):
            self.drawn["result"].append((Path(out), label))
            return f"result node {label}"

    image = synthetic_ct()
    p = types.SimpleNamespace(
        inputVolume=Volume(image), modelPath=Path(model_dirs["one_fold"]), targetClass="liver",
        region=m.Region.BOX, roiNode=Box(ras_bounds(image, (14, 14, 8), (20, 20, 11))), pointNode=None,
        snapMm=5.0, referenceSegmentation=None, referenceSegmentId="", anatomySegmentation=None,
        players=m.Players.FCC, spacingMm=10.0, marginMm=4.0, minSizeMl=0.0, fixedContext=False,
        value=m.Value.SOFT_DICE, normalized=False, budget=40, timeLimitS=0.0, seed=0, device=m.Device.CPU,
        mirroring=False, configuration="", folds="")
    logic = RecordingLogic()
    events, finished = [], {}
    logic.onEvent = lambda e, s: events.append(e)
    logic.onFinished = lambda s, node: finished.update(state=s, node=node)
    return m, scene, logic, p, events, finished


def drive(logic, until, timeout=300.0):
    """What the timer does: call ``poll`` every few ms while it is active."""
    t0 = time.monotonic()
    while logic.timer.active and not until():
        logic.poll()
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)


def test_a_run_exports_starts_colours_live_and_loads_the_result(logic_and_params):
    m, scene, logic, p, events, finished = logic_and_params
    assert logic.whyCannotRun(p) is None
    folder = logic.start(p)
    assert logic.running and logic.timer.active and (folder / "job.json").is_file()
    job = json.loads((folder / "job.json").read_text())
    assert job["roi_box_ras"] and job["ct"] == str(folder / "inputs" / "ct.nrrd") and job["device"] == "cpu"
    drive(logic, lambda: "state" in finished)
    state = finished["state"]
    assert state.outcome == "result", state.message
    assert finished["node"] == f"result node {logic.run.label}" and not logic.timer.active
    previews = logic.drawn["preview"]                            # coarse to fine: one per level
    assert len(previews) == sum(e["event"] == "players" for e in events) >= 2
    assert all(existed and path == job["preview"] for path, _, existed in previews)
    partials = [e for e in events if e["event"] == "partial"]
    assert len(logic.drawn["colors"]) == len(partials) >= 2
    assert all(node == f"preview node for {k} players" and len(phi) == k for node, k, phi in logic.drawn["colors"])
    assert logic.drawn["result"] == [(folder / "result", logic.run.label)]
    expl = json.loads((folder / "result" / "explanation.json").read_text())
    assert logic.drawn["colors"][-1][2] == [pl["phi"] for pl in expl["players"]]
    # each level's overlay gives way to the next, the last to the result
    assert scene.removed == [f"preview node for {n} players" for _, n, _ in previews]
    assert not (folder / "inputs").exists()                     # the CT copy is gone, the result stays


def test_cancel_mid_run_stops_within_a_second_and_leaves_nothing(logic_and_params):
    m, scene, logic, p, events, finished = logic_and_params
    p.budget = 600
    folder = logic.start(p)
    drive(logic, lambda: any(e["event"] == "partial" for e in events))
    pid = logic.worker.pid
    seconds = logic.cancel()
    assert seconds < 1.0 and not logic.running and not logic.timer.active
    assert finished["state"].outcome == "cancelled" and finished["node"] is None
    assert not folder.exists() and scene.removed and logic.drawn["result"] == []
    import psutil
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert logic.cancel() == 0.0                                 # a second cancel is harmless


def test_a_worker_killed_mid_run_is_resumed_to_the_same_phi(logic_and_params):
    """The worker dies (SIGKILL: the OOM killer, a closed laptop); the panel says so, knows
    what the journal saved, and a resume gives φ bitwise equal to an uninterrupted run."""
    import signal

    from ShapSegExplainLib.run.explain import run_explanation
    m, scene, logic, p, events, finished = logic_and_params
    p.budget = 600
    folder = logic.start(p)
    drive(logic, lambda: sum(e["event"] == "partial" for e in events) >= 2)
    assert logic.savedCoalitions() == 0                              # running: nothing to offer yet
    os.kill(logic.worker.pid, signal.SIGKILL)
    drive(logic, lambda: "state" in finished)
    assert finished["state"].outcome == "error" and finished["state"].error_code == "worker_crashed"
    saved = logic.savedCoalitions()
    assert saved > 0
    whole = run_explanation(replace(logic.run.job, out=str(folder / "whole"), preview=None))   # never stopped
    finished.clear()
    assert logic.resume() == folder and logic.run.job.resume
    drive(logic, lambda: "state" in finished)
    assert finished["state"].outcome == "result", finished["state"].message
    resumed = json.loads((folder / "result" / "explanation.json").read_text())
    assert resumed["stats"]["coalitions_resumed"] == saved
    assert [x["phi"] for x in resumed["players"]] == [x["phi"] for x in whole["players"]]
    assert logic.savedCoalitions() == 0


def test_a_failing_worker_reports_its_message_and_keeps_the_log(logic_and_params):
    m, scene, logic, p, events, finished = logic_and_params
    p.targetClass = "pancreas"                                   # not a class of the model
    folder = logic.start(p)
    drive(logic, lambda: "state" in finished)
    state = finished["state"]
    assert state.outcome == "error" and "pancreas" in state.message and finished["node"] is None
    assert (folder / "worker.log").is_file() and not (folder / "result").exists()


def test_what_is_missing_is_said_and_nothing_is_started(logic_and_params, tmp_path):
    m, scene, logic, p, events, finished = logic_and_params
    p.roiNode = None
    assert "box" in logic.whyCannotRun(p)
    p.region, p.pointNode = m.Region.POINT, None
    assert "point" in logic.whyCannotRun(p)
    p.modelPath = tmp_path / "not-a-model"
    assert "nnU-Net" in logic.whyCannotRun(p)
    with pytest.raises(m.ShapSegError):
        logic.start(p)
    assert logic.worker is None and not (tmp_path / "slicer-temp" / "ShapSegExplain").exists()


def test_an_export_failure_removes_the_run_folder(logic_and_params, tmp_path):
    m, scene, logic, p, events, finished = logic_and_params
    p.roiNode = Box([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])          # an ROI node that was never placed
    with pytest.raises(m.ShapSegError):
        logic.start(p)
    root = tmp_path / "slicer-temp" / "ShapSegExplain"
    assert logic.worker is None and (not root.exists() or not any(root.iterdir()))


class RecordingDisplay:
    def __init__(self):
        self.fill, self.outline, self.visible = {}, {}, {}

    def SetSegmentOpacity2DFill(self, sid, v):
        self.fill[sid] = v

    def SetSegmentOpacity2DOutline(self, sid, v):
        self.outline[sid] = v

    def SetSegmentVisibility(self, sid, v):
        self.visible[sid] = v


class ResultNode:
    def __init__(self):
        self.display = RecordingDisplay()

    def GetID(self):
        return "vtkMRMLSegmentationNode7"

    def GetAttribute(self, name):
        return "/a/result"

    def GetDisplayNode(self):
        return self.display


@pytest.mark.parametrize("show_uncertain", [False, True])
def test_the_overlay_follows_the_reports_display_rules(logic_and_params, show_uncertain):
    """Hundreds of players: fill by |φ|, outlines only on the top players, the uncertain ones
    and the context hidden unless asked for — the same styles as report.png."""
    from ShapSegExplainLib.display import TOP_OUTLINED, player_styles
    m, scene, logic, p, events, finished = logic_and_params
    rng = np.random.default_rng(0)
    phi, se = rng.normal(0, 0.02, 300), rng.uniform(0, 0.02, 300)
    phi[:4] = [0.5, -0.3, 0.2, 1.5]
    players = [{"id": i, "name": f"p{i}", "kind": "context" if i == 3 else "fcc", "phi": float(a), "se": float(b)}
               for i, (a, b) in enumerate(zip(phi, se))]
    node = ResultNode()
    logic._explanations[node.GetID()] = {"players": players}
    logic.applyDisplay(node, 0, 0.0, show_uncertain)
    styles = player_styles(phi, se, [pl["kind"] for pl in players], show_uncertain)
    d = node.display
    for pl, s in zip(players, styles):
        sid = f"player_{pl['id']}"
        assert d.fill[sid] == s.fill and (d.outline[sid] > 0) == s.outlined
        assert d.visible[sid] == (s.fill > 0)
    assert sum(v > 0 for v in d.outline.values()) <= TOP_OUTLINED and not d.visible["player_3"]
    hidden = sum(not v for v in d.visible.values())
    assert (hidden == 1) if show_uncertain else (hidden > 100)          # most of 300 small φ are uncertain
