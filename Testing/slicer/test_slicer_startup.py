"""The module as Slicer starts it: the installed layout that CMake produces, played through
``slicer_startup.py`` (Slicer's start-up rules, read from its sources at v5.10.0 and cited
there). Each test fails for one of issue 44's three start-up defects: a plugin file at the
top of the module folder loaded as a module, a Sample Data call that raises, an "Explain this"
that can never reach a slice view's menu."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_slicer_module import cmake_list

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("slicer_startup.py")


def installed_layout(dest: Path) -> Path:
    """<scripted-modules dir> as ``slicerMacroBuildScriptedModule`` fills it: every entry of the
    module's SCRIPTS and of the top-level engine's SCRIPTS and RESOURCES at dest/<entry>."""
    module = (ROOT / "ShapSegExplain" / "CMakeLists.txt").read_text()
    top = (ROOT / "CMakeLists.txt").read_text()
    entries = [(ROOT / "ShapSegExplain" / e, e) for e in cmake_list(module, "MODULE_PYTHON_SCRIPTS")]
    entries += [(ROOT / e, e) for e in cmake_list(top, "LIB_PYTHON_SCRIPTS") + cmake_list(top, "LIB_PYTHON_RESOURCES")]
    for src, rel in entries:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


def start_slicer(folder: Path, *extra: str) -> dict:
    out = subprocess.run([sys.executable, str(HARNESS), str(folder), *extra], capture_output=True, text=True,
                         cwd=folder)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> dict:
    folder = installed_layout(tmp_path_factory.mktemp("qt-scripted-modules"))
    return {"folder": folder, "record": start_slicer(folder)}


def test_every_top_level_file_of_the_installed_module_folder_instantiates_as_a_module(started):
    assert started["record"]["failed"] == []
    assert sorted(p.name for p in started["folder"].iterdir() if p.suffix == ".py") == ["ShapSegExplain.py"]


def test_sample_data_accepts_the_demo_phantom_at_startup(started):
    record = started["record"]
    assert record["startup_errors"] == []
    assert record["samples"] == {"ShapSeg Explain": ["ShapSegExplainDemoPhantom"]}


def test_explain_this_reaches_a_slice_views_menu_over_a_segment_and_only_there(started):
    record = started["record"]
    assert record["plugins"] == {"ShapSegExplain": ["ShapSegExplainThisAction"]}
    assert record["refused"] == []
    assert record["menu_on_segment"] == ["ShapSegExplainThisAction"]
    assert record["menu_off_segment"] == []
    assert record["explained"][0] == ["Prediction", "Segment_1"]        # the segment under the click


def test_registering_again_after_startup_changes_nothing(started):
    """A module loaded after start-up (Extension Wizard, reload) registers when its panel is set up."""
    again = start_slicer(started["folder"], "--again", "ShapSegExplain")["again"]
    assert again["samples"] == {"ShapSeg Explain": ["ShapSegExplainDemoPhantom"]}
    assert again["plugins"] == {"ShapSegExplain": ["ShapSegExplainThisAction"]} and again["refused"] == []


def test_the_harness_holds_to_slicers_rules_not_to_the_module(tmp_path):
    """The rules bite: a helper .py at the top of a module folder fails to instantiate, a sample
    with no URI list raises, a plugin that registers in its constructor has no view action."""
    (tmp_path / "Helper.py").write_text("X = 1\n")
    (tmp_path / "Probe.py").write_text('''
import slicer, qt
class Probe:
    def __init__(self, parent):
        slicer.app.connect("startupCompleted()", self.sample)
        slicer.app.connect("startupCompleted()", self.plugin)
    def sample(self):
        import SampleData
        SampleData.SampleDataLogic.registerCustomSampleDataSource(sampleName="P", customDownloader=print)
    def plugin(self):
        p = slicer.qSlicerSubjectHierarchyScriptedPlugin(None)
        p.setPythonSource(__file__.replace("Probe.py", "probe/ProbeSubjectHierarchyPlugin.py"))
        slicer.qSlicerSubjectHierarchyPluginHandler.instance().registerPlugin(p)
''')
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "ProbeSubjectHierarchyPlugin.py").write_text('''
import qt
from SubjectHierarchyPlugins import AbstractScriptedSubjectHierarchyPlugin
class ProbeSubjectHierarchyPlugin(AbstractScriptedSubjectHierarchyPlugin):
    def __init__(self, scriptedPlugin):
        scriptedPlugin.name = "Probe"
        AbstractScriptedSubjectHierarchyPlugin.__init__(self, scriptedPlugin)
        self.action = qt.QAction("probe", scriptedPlugin)
    def viewContextMenuActions(self):
        return [self.action]
''')
    record = start_slicer(tmp_path)
    assert [f[0] for f in record["failed"]] == ["Helper"] and "class Helper was not found" in record["failed"][0][1]
    assert record["startup_errors"][0].startswith("TypeError")
    assert record["plugins"] == {"Probe": []} and record["refused"] == ["Probe"]


def test_a_module_parent_takes_only_what_slicer_lets_python_write(tmp_path):
    """R10: the module's own writes pass (the first test), while a read-only property of the C++
    module or a new attribute on it fails to instantiate, as PythonQt raises on both."""
    for name, line in (("ReadOnly", "parent.name = 'x'"), ("NewName", "parent.helpURL = 'x'"),
                       ("Allowed", "parent.title = 'x'; parent.hidden = True; parent.index = 3")):
        (tmp_path / f"{name}.py").write_text(f"class {name}:\n    def __init__(self, parent):\n        {line}\n")
    record = start_slicer(tmp_path)
    failed = dict(record["failed"])
    assert sorted(failed) == ["NewName", "ReadOnly"]
    assert failed["ReadOnly"] == "AttributeError: Property 'name' of qSlicerScriptedLoadableModule object is not writable"
    assert "creating new attributes on C++ objects is not allowed" in failed["NewName"]
