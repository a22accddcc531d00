"""Every Slicer, MRML and VTK call of the module exists in the oldest supported Slicer release.

``slicer_api_v5.10.0.json`` is made from Slicer's own sources at the tag by
``scripts/slicer_api_index.py`` (method names of the MRML, segmentation, markups, tables ...
headers; ``slicer.util``'s functions; ``slicer.app``'s properties; the loadable modules; VTK's
core classes). The check is by name: a method the release does not declare anywhere fails —
``SetUseColumnTitleAsColumnHeader`` against v5.6.0, for one (defect 2 of issue 14)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p for p in (ROOT / "ShapSegExplain").rglob("*.py") if "Testing" not in p.parts)   # all it ships
INDEX = Path(__file__).with_name("slicer_api_v5.10.0.json")
# receivers that are not Slicer objects: Python's and other packages' (checked by their own tests)
NOT_SLICER = {"pathlib", "psutil", "qt", "ctk", "PyTorchUtils", "os", "sys", "shutil", "logging", "json", "np",
              "enum", "time", "subprocess"}
QT_APPLICATION = {"applicationFilePath", "processEvents", "connect"}   # QCoreApplication's / QObject's (Qt 5)


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def module_calls() -> set[tuple[str, str]]:
    """(where, name): ``util``/``app``/``modules`` for ``slicer.util.f``, ``slicer.app.p``,
    ``slicer.modules.m``; ``method`` for every other CamelCase method called (MRML/VTK style)."""
    found = set()
    for node in (n for path in MODULES for n in ast.walk(ast.parse(path.read_text()))):
        if isinstance(node, ast.Attribute):
            owner = _dotted(node.value)
            if owner in ("slicer.util", "slicer.app", "slicer.modules"):
                found.add((owner.split(".")[1], node.attr))
                continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr[:1].isupper():
            if _dotted(node.func.value) in ("slicer.util", "slicer.app", "slicer.modules"):
                continue
            if _root(node.func.value) not in NOT_SLICER:
                found.add(("method", node.func.attr))
    return found


def missing_from(index: dict) -> list[str]:
    known = {"method": set(index["methods"]) | set(index["vtk_methods"]), "util": set(index["util"]),
             "app": set(index["app"]) | QT_APPLICATION,
             "modules": set(index["modules"]) | {"shapsegexplain"}}        # Slicer's, and this module
    return sorted(f"{where}.{name}" for where, name in module_calls() if name not in known[where])


def test_every_slicer_call_of_the_module_exists_in_the_oldest_supported_release(capsys):
    from ShapSegExplainLib.panel.dependencies import MIN_SLICER
    index = json.loads(INDEX.read_text())
    assert index["tag"] == f"v{MIN_SLICER[0]}.{MIN_SLICER[1]}.0"
    calls = module_calls()
    assert len(calls) > 60 and ("method", "SetSegmentOpacity2DFill") in calls and ("util", "loadSegmentation") in calls
    assert missing_from(index) == []
    with capsys.disabled():
        kinds = {w: sum(1 for k, _ in calls if k == w) for w in ("method", "util", "app", "modules")}
        print(f"\n{len(calls)} Slicer/MRML/VTK names checked against Slicer {index['tag']} "
              f"({index['headers']} headers; VTK {index['vtk_version']}): {kinds}")


def test_the_check_fails_on_a_call_the_release_does_not_declare():
    index = json.loads(INDEX.read_text())
    as_in_5_6 = {**index, "methods": [m for m in index["methods"] if m != "SetUseColumnTitleAsColumnHeader"]}
    assert missing_from(as_in_5_6) == ["method.SetUseColumnTitleAsColumnHeader"]
    assert missing_from({**index, "util": [u for u in index["util"] if u != "pip_install"]}) == ["util.pip_install"]
