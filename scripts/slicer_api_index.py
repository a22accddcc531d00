"""Index the Slicer API names of one Slicer release, for ``Testing/slicer/test_slicer_api.py``.

From a git clone of Slicer at a tag: every method name declared in the C++ headers of the
MRML, segmentation, markups, tables ... libraries and modules (declarations and VTK's
``vtkGet/Set...Macro``/``vtkBooleanMacro``), the application's properties and methods
(``qSlicerCoreApplication``/``qSlicerApplication``: ``slicer.app``), the loadable modules
(``slicer.modules.<name>``) and the functions of ``slicer.util`` at that tag. VTK's own
methods (``vtkStringArray.InsertNextValue``, ...) come from the ``vtk`` Python package this
script runs with (Slicer ships its own VTK 9 build; its core API is VTK's), recorded with its
version. The test then checks every Slicer/MRML/VTK call of the module against the index.

    python scripts/slicer_api_index.py --repo SLICER_GIT_DIR --tag v5.10.0 \\
        --out Testing/slicer/slicer_api_v5.10.0.json        # run with .venv-mrml/bin/python (vtk)
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import re
import subprocess
import tarfile

HEADER_ROOTS = ("Libs/MRML/", "Libs/vtkSegmentationCore/", "Libs/vtkITK/", "Modules/Loadable/", "Base/Logic/",
                "Base/QTCore/qSlicerCoreApplication.h", "Base/QTGUI/qSlicerApplication.h")
DECLARED = re.compile(r"\b([A-Z][A-Za-z0-9_]*)\s*\(")                       # Name( in a declaration
MACRO = re.compile(r"\bvtk(Get|Set)\w*Macro\s*\(\s*(\w+)")                 # vtkGetMacro(Name, ...)
BOOLEAN = re.compile(r"\bvtkBooleanMacro\s*\(\s*(\w+)")
PROPERTY = re.compile(r"Q_PROPERTY\s*\(\s*[\w:<>*& ]+?\s+(\w+)\s+READ")
QT_METHOD = re.compile(r"\b([a-z][A-Za-z0-9_]*)\s*\(")


def tag_files(repo: str, tag: str, prefixes: tuple[str, ...]) -> dict[str, str]:
    """{path: text} of the files under ``prefixes`` at ``tag`` (one ``git archive``)."""
    data = subprocess.run(["git", "--git-dir", repo, "archive", "--format=tar", tag, *prefixes],
                          capture_output=True, check=True).stdout
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.isfile() and (m.name.endswith(".h") or m.name.endswith(".py")):
                out[m.name] = tar.extractfile(m).read().decode("utf-8", "replace")
    return out


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def header_names(text: str) -> set[str]:
    text = strip_comments(text)
    names = set(DECLARED.findall(text))
    names |= {f"{kind}{name}" for kind, name in MACRO.findall(text)}
    for name in BOOLEAN.findall(text):
        names |= {f"{name}On", f"{name}Off"}
    return names


def app_names(text: str) -> set[str]:
    text = strip_comments(text)
    return set(PROPERTY.findall(text)) | set(QT_METHOD.findall(text))


def util_names(text: str) -> set[str]:
    tree = ast.parse(text)
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


VTK_MODULES = ("vtkCommonCore", "vtkCommonMath", "vtkCommonDataModel", "vtkCommonTransforms")


def vtk_methods() -> tuple[str, set[str]]:
    """Method names of VTK's core classes (arrays, matrices, tables, objects, commands): what
    the module calls on plain VTK objects. Other VTK kits are left out to keep the index small."""
    import importlib

    import vtk
    names = set()
    for module in VTK_MODULES:
        kit = importlib.import_module(f"vtkmodules.{module}")
        for cls in dir(kit):
            if cls.startswith("vtk"):
                names |= {m for m in dir(getattr(kit, cls)) if m[:1].isupper()}
    return vtk.vtkVersion.GetVTKVersion(), names


def build(repo: str, tag: str) -> dict:
    files = tag_files(repo, tag, HEADER_ROOTS)
    methods, app = set(), set()
    for path, text in files.items():
        if path.endswith(".h"):
            (app if "qSlicer" in path and "Application" in path else methods).update(
                app_names(text) if "Application.h" in path else header_names(text))
    util = util_names(tag_files(repo, tag, ("Base/Python/slicer/util.py",))["Base/Python/slicer/util.py"])
    listing = subprocess.run(["git", "--git-dir", repo, "ls-tree", "--name-only", f"{tag}:Modules/Loadable"],
                             capture_output=True, text=True, check=True).stdout.split()
    version, vtk_names = vtk_methods()
    return {"tag": tag, "headers": sum(p.endswith(".h") for p in files), "methods": sorted(methods),
            "app": sorted(app), "util": sorted(util), "modules": sorted(m.lower() for m in listing),
            "vtk_version": version, "vtk_methods": sorted(vtk_names - methods)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, help="Slicer's git directory")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    index = build(a.repo, a.tag)
    with open(a.out, "w") as f:
        json.dump(index, f, separators=(",", ":"))
    print(f"{a.out}: {a.tag}, {index['headers']} headers, {len(index['methods'])} method names, "
          f"{len(index['util'])} slicer.util names, VTK {index['vtk_version']} ({len(index['vtk_methods'])} more)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
