"""The Slicer extension without Slicer: the CMake file lists against the folder, the widget
names the module uses against the ``.ui``, the parameter bindings against the parameter
node, the module compiling and loading (on stub ``slicer``/``qt``/``ctk``/``vtk``) without
importing torch, and the dependency list against ``pyproject.toml``."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "ShapSegExplain"
MODULE = MODULE_DIR / "ShapSegExplain.py"
PARTS = sorted((MODULE_DIR / "ShapSegExplainSlicer").glob("*.py"))     # the module's Slicer-side parts
LIB = ROOT / "ShapSegExplainLib"
UI = ROOT / "Resources" / "UI" / "ShapSegExplain.ui"
HEAVY = ("torch", "nnunetv2", "matplotlib", "SimpleITK", "skimage", "scipy")


def cmake_list(text: str, name: str) -> list[str]:
    """The entries of ``set(NAME ...)`` with ``${MODULE_NAME}`` expanded."""
    module = re.search(r"set\(MODULE_NAME\s+(\S+)\)", text)
    body = re.search(rf"set\({name}\s+(.*?)\)", text, re.S).group(1)
    return [e.replace("${MODULE_NAME}", module.group(1)) if module else e for e in body.split()
            if not e.startswith("#")]


# ----- CMake -----------------------------------------------------------------------------------
def test_extension_cmake_has_the_metadata_and_the_module():
    text = (ROOT / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({key}\s+\"[^\"]+\"\)", text), key
    assert re.search(r"set\(EXTENSION_DEPENDS\s+\"PyTorch\"\)", text)
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(ShapSegExplain)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text, line


def test_license_contributors_and_supported_versions_as_the_extension_index_wants():
    text = (ROOT / "CMakeLists.txt").read_text()
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS\s+"([^"]+)"\)', text).group(1)
    assert all(re.fullmatch(r"[^()]+ \([^()]+\)", c.strip()) for c in contributors.split(","))   # Name (Organisation)
    module = (ROOT / "ShapSegExplain" / "ShapSegExplain.py").read_text()
    assert f'self.parent.contributors = ["{contributors}"]' in module
    licence = (ROOT / "LICENSE").read_text()
    assert licence.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in licence
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"] == "Apache-2.0"
    assert "Requires 3D Slicer 5.10 or later" in text


def test_cmake_lists_every_shipped_file_and_only_existing_ones():
    """The module's CMake ships the script; the top-level one ships the engine and the resources
    from the top-level folders, each entry landing at <scripted-modules dir>/<entry>."""
    module = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert sorted(cmake_list(module, "MODULE_PYTHON_SCRIPTS")) == sorted(
        p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py") if "Testing" not in p.parts)
    assert all((MODULE_DIR / f).is_file() for f in cmake_list(module, "MODULE_PYTHON_SCRIPTS"))
    top = (ROOT / "CMakeLists.txt").read_text()
    scripts, resources = cmake_list(top, "LIB_PYTHON_SCRIPTS"), cmake_list(top, "LIB_PYTHON_RESOURCES")
    for f in scripts + resources:
        assert (ROOT / f).is_file(), f"listed but missing: {f}"
    assert sorted(scripts) == sorted(p.relative_to(ROOT).as_posix() for p in LIB.rglob("*.py"))
    shipped = sorted(p.relative_to(ROOT).as_posix() for d in (ROOT / "Resources", LIB / "demo" / "model")
                     for p in d.rglob("*") if p.is_file())
    assert sorted(resources) == shipped
    assert {"Resources/Icons/ShapSegExplain.png", "Resources/UI/ShapSegExplain.ui"} <= set(resources)
    assert re.search(r"slicerMacroBuildScriptedModule\(\s*NAME ShapSegExplainLib\s+SCRIPTS \$\{LIB_PYTHON_SCRIPTS\}"
                     r"\s+RESOURCES \$\{LIB_PYTHON_RESOURCES\}\s*\)", top)
    assert re.search(r"slicerMacroBuildScriptedModule\(.*?WITH_GENERIC_TESTS.*?\)", module, re.S)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module
    assert "add_subdirectory(Testing)" in module and (MODULE_DIR / "Testing" / "CMakeLists.txt").is_file()


def test_icon_is_a_128px_png():
    from PIL import Image
    with Image.open(ROOT / "Resources" / "Icons" / "ShapSegExplain.png") as im:
        assert im.format == "PNG" and im.size == (128, 128)


# ----- .ui and bindings ------------------------------------------------------------------------
def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI).getroot().iter("widget")}


def module_source() -> str:
    """The module script and its Slicer-side parts, which it imports at load time."""
    return "\n".join(f.read_text() for f in [MODULE, *PARTS])


def module_tree() -> ast.Module:
    """One tree of the module and its parts: each file's top-level statements in turn."""
    return ast.Module(body=[n for f in [MODULE, *PARTS] for n in ast.parse(f.read_text()).body], type_ignores=[])


def ui_names_used() -> set[str]:
    """Every ``self.ui.NAME`` in the module."""
    return {n.attr for n in ast.walk(module_tree()) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)
            and n.value.attr == "ui" and isinstance(n.value.value, ast.Name) and n.value.value.id == "self"}


def parameter_fields() -> dict[str, str]:
    """Field name → annotation source of the ``@parameterNodeWrapper`` class."""
    cls = next(n for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name == "ShapSegExplainParameterNode")
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body if isinstance(n, ast.AnnAssign)}


def bound_widgets() -> dict[str, ET.Element]:
    """Parameter name → the widget carrying it as ``SlicerParameterName``."""
    out = {}
    for w in ui_widgets().values():
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                out[p.find("string").text] = w
    return out


def test_every_widget_the_module_uses_exists_in_the_ui():
    used, present = ui_names_used(), set(ui_widgets())
    assert len(used) >= 20          # the walk finds the module's widgets
    assert used <= present, sorted(used - present)


def test_every_bound_widget_names_a_parameter_of_the_right_type():
    fields, bound = parameter_fields(), bound_widgets()
    assert set(bound) <= set(fields), sorted(set(bound) - set(fields))
    enums = {"Device", "Region", "Players", "Value"}
    for name, w in bound.items():
        cls, ann = w.get("class"), fields[name]
        base = re.sub(r"Annotated\[(\w+(?:\.\w+)?),.*", r"\1", ann)
        if cls == "qMRMLNodeComboBox":
            types = [s.text for s in w.find("property[@name='nodeTypes']").iter("string")]
            assert types == [base], (name, types, base)
        else:
            expected = {"QComboBox": enums, "QCheckBox": {"bool"}, "QDoubleSpinBox": {"float"}, "QSpinBox": {"int"},
                        "QLineEdit": {"str"}, "ctkPathLineEdit": {"pathlib.Path"}}[cls]
            assert base in expected, (name, cls, ann)


def test_parameters_without_a_bound_widget_are_handled_by_the_module():
    unbound = set(parameter_fields()) - set(bound_widgets())
    assert unbound == {"targetClass", "referenceSegmentation", "referenceSegmentId", "referenceIsland",
                       "regionSegmentation", "regionSegmentId", "regionIsland"}
    source = module_source()
    for name in unbound:
        assert f"_parameterNode.{name} =" in source or f"p.{name} =" in source, name


def test_ui_custom_widgets_are_declared_and_scene_widgets_connected():
    root = ET.parse(UI).getroot()
    declared = {c.find("class").text for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if c.startswith(("q", "ctk"))} <= declared
    connected = {c.find("receiver").text for c in root.iter("connection")
                 if c.find("slot").text == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {w.get("name") for w in root.iter("widget")
            if w.get("class").startswith(("qMRML", "qSlicerMarkups")) and w.get("name") != "ShapSegExplain"}
    assert mrml <= connected, sorted(mrml - connected)


# ----- loading the module ----------------------------------------------------------------------
def engine_imports() -> list[str]:
    """The ShapSegExplainLib modules the module imports at load time."""
    out = []
    for n in module_tree().body:
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("ShapSegExplainLib"):
            folder = ROOT / n.module.replace(".", "/")
            out += [n.module] + [f"{n.module}.{a.name}" for a in n.names if (folder / f"{a.name}.py").is_file()]
    return out


def test_module_compiles():
    compile(MODULE.read_text(), str(MODULE), "exec")


def test_engine_parts_the_module_imports_do_not_import_torch():
    mods = engine_imports()
    assert "ShapSegExplainLib.panel.worker_process" in mods and "ShapSegExplainLib.panel.result_view" in mods
    code = (f"import sys\nfor m in {mods!r}: __import__(m)\n"
            f"print([h for h in {HEAVY!r} if h in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


STUBS = r'''
import sys, types, enum
def mod(name, **attrs):
    m = types.ModuleType(name); m.__dict__.update(attrs); sys.modules[name] = m; return m
class Any:
    def __init__(self, *a, **k): pass
    def __getattr__(self, name): return Any()
    def __call__(self, *a, **k): return Any()
def base(name): return type(name, (), {"__init__": lambda self, *a, **k: None})
def WithinRange(lo, hi): return ("range", lo, hi)
def parameterNodeWrapper(cls): cls.__wrapped_fields__ = dict(cls.__annotations__); return cls
node_types = {n: type(n, (), {}) for n in ("vtkMRMLMarkupsFiducialNode", "vtkMRMLMarkupsROINode",
              "vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode")}
slicer = mod("slicer", **node_types)
mod("slicer.i18n", tr=lambda s: s, translate=lambda ctx, s: s)
mod("slicer.parameterNodeWrapper", WithinRange=WithinRange, parameterNodeWrapper=parameterNodeWrapper)
mod("slicer.ScriptedLoadableModule", **{n: base(n) for n in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic",
    "ScriptedLoadableModuleTest", "ScriptedLoadableModuleWidget")})
mod("slicer.util", VTKObservationMixin=base("VTKObservationMixin"))
slicer.i18n, slicer.util = sys.modules["slicer.i18n"], sys.modules["slicer.util"]
for name in ("qt", "ctk", "vtk"): mod(name, __getattr__=lambda attr: Any())
'''


def test_module_loads_on_stub_slicer_without_torch_and_its_choices_match_the_engine():
    code = STUBS + f'''
import importlib.util, json
sys.path.insert(0, {str(MODULE.parent)!r})      # Slicer puts the module's folder on sys.path (slicer_startup R4)
spec = importlib.util.spec_from_file_location("ShapSegExplain", {str(MODULE)!r})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
print(json.dumps({{"heavy": [h for h in {HEAVY!r} if h in sys.modules],
    "players": sorted(e.value for e in m.Players), "values": sorted(e.value for e in m.Value),
    "regions": sorted(e.value for e in m.Region),
    "labels": [e.label() for e in (*m.Players, *m.Value, *m.Region, *m.Device)],
    "classes": [c for c in ("ShapSegExplain", "ShapSegExplainWidget", "ShapSegExplainLogic", "ShapSegExplainTest")
                if hasattr(m, c)]}}))
'''
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["heavy"] == [], "loading the module imported " + ", ".join(info["heavy"])
    from ShapSegExplainLib.choices import PLAYERS, VALUES
    from ShapSegExplainLib.panel.run_request import REGIONS
    assert info["players"] == sorted(PLAYERS) and info["values"] == sorted(VALUES)
    assert info["regions"] == sorted(REGIONS)
    assert all(info["labels"]) and len(info["classes"]) == 4


def test_module_has_a_self_test_that_runs_the_demo_and_a_cancel():
    """``ShapSegExplainTest`` (the name Slicer's ``runTest`` and ctest look up) is the self-test
    of ShapSegExplainSlicer/selftest.py, run with the module's own Logic."""
    classes = {n.name: n for n in module_tree().body if isinstance(n, ast.ClassDef)}
    test = classes["ShapSegExplainTest"]
    assert [ast.unparse(b) for b in test.bases] == ["ShapSegExplainSelfTest"]
    assert any(isinstance(n, ast.Assign) and ast.unparse(n) == "logicClass = ShapSegExplainLogic" for n in test.body)
    cls = classes["ShapSegExplainSelfTest"]
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert {"runTest", "test_DemoEndToEnd", "test_CancelStopsTheWorker"} <= methods
    run = ast.unparse(next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "runTest"))
    assert "test_DemoEndToEnd" in run and "test_CancelStopsTheWorker" in run
    # test_slicer_run_path runs the self-test's computation: the same budget
    from test_slicer_run_path import SELF_TEST_BUDGET
    budget = next(n.value for n in cls.body if isinstance(n, ast.Assign) and n.targets[0].id == "DEMO_BUDGET")
    assert ast.literal_eval(budget) == SELF_TEST_BUDGET


# ----- dependencies ----------------------------------------------------------------------------
def test_dependency_list_is_pyprojects():
    from ShapSegExplainLib.panel import dependencies
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(r for _, r in dependencies.REQUIREMENTS) == sorted(deps)


def test_missing_dependencies_and_the_torch_split():
    from ShapSegExplainLib.panel import dependencies
    absent = {"torch", "nnunetv2"}
    missing = dependencies.missing(lambda name: None if name in absent else object())
    assert missing == ["torch>=2.4", "nnunetv2>=2.6"]
    assert dependencies.missing(lambda name: object()) == []
    torch, rest = dependencies.split_torch(missing + ["torchvision>=0.19"])
    assert torch == ["torch>=2.4", "torchvision>=0.19"] and rest == ["nnunetv2>=2.6"]
    assert dependencies.version_requirement("torch") == ">=2.4"
    assert dependencies.version_requirement("skimage") == ">=0.22"


@pytest.mark.parametrize("python, version, refused", [
    ((3, 9, 10), "5.8", True),       # Slicer 5.6 and 5.8 ship Python 3.9.10: nnU-Net 2.6+ cannot install
    ((3, 9, 10), "5.6", True),
    ((3, 12, 10), "5.8", True),      # a Slicer older than 5.10 is refused whatever it reports
    ((3, 12, 10), "5.10", False),
    ((3, 12, 10), "5.12", False),
    ((3, 13, 1), "6.0", False),
    ((3, 12, 10), None, False),      # no application (scripts, tests): the Python decides
])
def test_an_old_slicer_is_told_so_in_one_line(python, version, refused):
    """Defect 1: on Slicer 5.6/5.8 Install could never succeed (nnunetv2>=2.6 needs Python >= 3.10)."""
    from ShapSegExplainLib.panel import dependencies
    text = dependencies.unsupported(python, version)
    assert (text is not None) == refused
    if refused:
        assert "\n" not in text and "5.10 or later" in text and f"Python {python[0]}.{python[1]}" in text
    assert tuple(int(v) for v in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                 ["requires-python"].lstrip(">=").split(".")) == dependencies.MIN_PYTHON


def test_install_pins_everything_installed_so_pip_only_adds():
    """Selective install: a constraints file pins every installed distribution (Slicer's SimpleITK,
    numpy, requests ...), so pip adds the missing packages and never replaces one of them."""
    from ShapSegExplainLib.panel import dependencies
    text = dependencies.constraints_text({"SimpleITK": "2.4.1", "numpy": "1.26.4", "requests": "2.32.3",
                                          "weird": "unknown", "torch": "2.8.0+cu126"})
    assert text.splitlines() == ["numpy==1.26.4", "requests==2.32.3", "SimpleITK==2.4.1", "torch==2.8.0+cu126"]
    assert dependencies.pip_arguments(["nnunetv2>=2.6", "slicerio>=1.4"], "/t/c.txt") == \
        ["nnunetv2>=2.6", "slicerio>=1.4", "-c", "/t/c.txt"]
    here = dependencies.installed_versions()
    import numpy
    assert here.get("numpy") == numpy.__version__


@pytest.mark.parametrize("broken", [ImportError, ValueError])
def test_a_broken_package_counts_as_missing(broken):
    from ShapSegExplainLib.panel import dependencies

    def find_spec(name):
        if name == "scipy":
            raise broken("broken install")
        return object()
    assert dependencies.missing(find_spec) == ["scipy>=1.11"]


def test_panel_defaults_are_the_command_lines():
    """A run with the panel untouched means what ``shapseg explain`` means with no options."""
    from ShapSegExplainLib.run.job import ExplainJob
    cls = next(n for n in module_tree().body if isinstance(n, ast.ClassDef) and n.name == "ShapSegExplainParameterNode")
    defaults = {n.target.id: ast.unparse(n.value) for n in cls.body if isinstance(n, ast.AnnAssign) and n.value}
    job = ExplainJob(ct="c", model="m", target="t", out="o", roi_point=[0, 0, 0])
    pairs = {"snapMm": job.snap_mm, "spacingMm": job.spacing_mm, "marginMm": job.margin_mm, "seed": job.seed,
             "mirroring": job.mirroring, "normalized": job.normalized}
    for name, value in pairs.items():
        assert ast.literal_eval(defaults[name]) == value, name
    assert defaults["players"] == f"Players.{job.players.upper()}" and defaults["value"] == f"Value.{job.value.upper()}"
    assert defaults["device"] == f"Device.{job.device.upper()}"
    assert ast.literal_eval(defaults["budget"]) == 0 and job.budget is None            # 0 = automatic
    assert ast.literal_eval(defaults["fixedContext"]) is False and job.context_player is True


def test_engine_never_imports_slicer_or_qt():
    """The engine stays Slicer-free: no import of slicer, qt, ctk or vtk anywhere in it."""
    files = sorted(LIB.rglob("*.py"))
    assert len(files) > 30
    for f in files:
        for n in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module or ""] if isinstance(n, ast.ImportFrom) else []
            assert not [m for m in names if m.split(".")[0] in ("slicer", "qt", "ctk", "vtk")], (f.name, names)
