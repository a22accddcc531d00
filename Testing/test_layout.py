"""The package's shape: imports flow one way (no cycles; a stage imports only earlier stages),
and the layers that must stay light (players for ``RoiPlan``, the torch-free panel) do."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "ShapSegExplainLib"
# Stages in data-flow order; a module may import its own stage or an earlier one.
STAGE = {"__init__": 0, "errors": 0, "choices": 0, "colors": 0, "display": 0, "components": 0, "nnunet": 1, "players": 2,
         "shapley": 2, "report": 3, "run": 4, "demo": 5, "panel": 6, "study": 6, "cli": 7, "cli_docs": 8,
         "api": 7}
ROOT = "ShapSegExplainLib"      # its __init__ loads the API lazily (PEP 562): the one edge allowed backwards


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ShapSegExplainLib module ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parent = package.split(".")[:len(package.split(".")) - (n.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            if base.startswith("ShapSegExplainLib"):
                for a in n.names:     # ``from . import outputs`` names a module
                    sub = LIB.parent / (base.replace(".", "/") + f"/{a.name}.py")
                    found.add(f"{base}.{a.name}" if sub.is_file() else base)
        elif isinstance(n, ast.Import):
            found |= {a.name for a in n.names if a.name.startswith("ShapSegExplainLib")}
    return found - {name}


def graph() -> dict[str, set[str]]:
    """The import graph, less the root's lazy exports (``test_the_root_exports_lazily``)."""
    g = {module_name(p): imports_of(p) for p in LIB.rglob("*.py")}
    g[ROOT] = g[ROOT] - {f"{ROOT}.api", f"{ROOT}.errors"}
    return g


def test_the_root_exports_lazily():
    """``import ShapSegExplainLib`` imports nothing else; ``explain`` loads the API on first use."""
    assert imports_of(LIB / "__init__.py") == {f"{ROOT}.api", f"{ROOT}.errors"}
    top = ast.parse((LIB / "__init__.py").read_text()).body
    assert not [n for n in top if isinstance(n, (ast.Import, ast.ImportFrom))]


def stage(module: str) -> int:
    parts = module.split(".")
    return STAGE["__init__"] if len(parts) == 1 else STAGE[parts[1]]


def test_every_module_has_a_stage_and_imports_only_its_own_or_earlier_stages():
    g = graph()
    assert len(g) > 35 and "ShapSegExplainLib.nnunet.grid" in g
    back = [(a, b) for a, deps in g.items() for b in deps if stage(b) > stage(a)]
    assert not back, back
    # stages of equal rank do not import each other (players and shapley are independent)
    across = [(a, b) for a, deps in g.items() for b in deps
              if stage(a) == stage(b) and stage(a) > 0 and a.split(".")[1] != b.split(".")[1]]
    assert not across, across


def test_the_import_graph_has_no_cycle():
    g = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            assert state.get(dep) != 1, " -> ".join(path + [node, dep])
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [])


def test_light_layers_import_no_torch():
    """Players use ``RoiPlan`` without torch; the panel (what Slicer's GUI imports) stays free of
    torch, nnU-Net, SimpleITK, scipy, scikit-image and matplotlib."""
    panel = sorted(module_name(p) for p in (LIB / "panel").glob("*.py")) + ["ShapSegExplainLib.demo",
                                                                             "ShapSegExplainLib.run.job"]
    players = [module_name(p) for p in (LIB / "players").glob("*.py")] + ["ShapSegExplainLib.nnunet.grid"]
    heavy = ("torch", "nnunetv2", "SimpleITK", "scipy", "skimage", "matplotlib")
    code = ("import sys, json\n"
            f"for m in {panel!r}: __import__(m)\n"
            f"light = [h for h in {heavy!r} if h in sys.modules]\n"
            f"for m in {players!r}: __import__(m)\n"
            "print(json.dumps({'panel': light, 'players_torch': 'torch' in sys.modules}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout)
    assert out == {"panel": [], "players_torch": False}, out
