"""The module's install path in a Slicer-5.10-like Python, timed: can pip resolve what the
worker needs under the exact versions Slicer 5.10.0 ships, and does the demo then run?

Steps (each timed, its output in ``--out``):
1. a venv of a CPython 3.12 (Slicer 5.10.0 builds 3.12.10; the nearest here is what ``--python``
   names), pip upgraded to Slicer's pin first (as its SuperBuild does), then every package of
   ``Testing/slicer/slicer_5.10.0_python_packages.txt`` (read from its SuperBuild files);
2. torch and torchvision as the PyTorch extension would pick them (``--torch``; its
   light-the-torch ranks versions as text, so ``>=2.4`` picks 2.9.1 on the CPU index, which this
   machine cannot reach: the same versions come from PyPI);
3. the rest exactly as ``ShapSegExplain.py``'s ``installDependencies`` does it, through the same
   functions of ``panel/dependencies.py``: the missing requirements only, with every installed
   distribution pinned in a constraints file;
4. ``pip check``, then ``shapseg demo`` run by that Python (the worker's command line).

    python benchmarks/slicer_env/install_check.py --python $(pyenv root)/versions/3.12.1/bin/python3.12 \\
        --out /tmp/slicer510_env
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from packaging.utils import canonicalize_name as norm   # a name as pip compares them (PEP 503)

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "Testing" / "slicer" / "slicer_5.10.0_python_packages.txt"
INSTALL = """
import json, pathlib, subprocess, sys
from ShapSegExplainLib.panel import dependencies as d
missing = d.missing()
torch, rest = d.split_torch(missing)
constraints = pathlib.Path(sys.argv[1])
constraints.write_text(d.constraints_text(d.installed_versions()))
print(json.dumps({"missing": missing, "torch_missing": torch, "pip_arguments": d.pip_arguments(rest, str(constraints))}))
if torch:
    sys.exit("torch is missing: the PyTorch extension's step did not run")
if rest:
    subprocess.run([sys.executable, "-m", "pip", "install", *d.pip_arguments(rest, str(constraints))], check=True)
print(json.dumps({"still_missing": d.missing()}))
"""


def pins(path: Path = PINS) -> list[str]:
    """``name==version`` lines of the pins file (comments and commented-out pins dropped)."""
    out = []
    for line in path.read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if req:
            out.append(req)
    return out


def step(log: dict, name: str, cmd: list[str], out: Path, **kw) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    with open(out / f"{name}.log", "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, text=True, **kw)
    log[name] = {"seconds": round(time.perf_counter() - t0, 1), "rc": proc.returncode}
    print(f"{name}: rc {proc.returncode}, {log[name]['seconds']} s", flush=True)
    if proc.returncode:
        raise SystemExit(f"{name} failed: see {out / (name + '.log')}")
    return proc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True, help="a CPython 3.12 interpreter")
    ap.add_argument("--torch", nargs=2, default=["torch==2.9.1", "torchvision==0.24.1"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    venv = args.out / "venv"
    py = str(venv / "bin" / "python")
    log: dict = {"pins": pins(), "torch": args.torch}
    env = {"PYTHONPATH": str(ROOT), "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(Path.home())}
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    step(log, "venv", [args.python, "-m", "venv", str(venv)], args.out)
    first = [p for p in log["pins"] if p.lower().startswith("pip==")]
    step(log, "slicer_pip", [*pip, *first], args.out)
    step(log, "slicer_pins", [*pip, "--only-binary=:all:", *log["pins"]], args.out)
    step(log, "pytorch_extension", [*pip, *args.torch], args.out)
    step(log, "module_installer", [py, "-c", INSTALL, str(args.out / "constraints.txt")], args.out, env=env)
    step(log, "pip_check", [py, "-m", "pip", "check"], args.out)
    freeze = subprocess.run([py, "-m", "pip", "freeze", "--all"], capture_output=True, text=True).stdout
    log["versions"] = {norm(n): v for n, v in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", freeze, re.M)}
    wanted = dict(p.split("==") for p in log["pins"])
    changed = {n: (v, log["versions"].get(norm(n))) for n, v in wanted.items() if log["versions"].get(norm(n)) != v}
    log["slicer_pins_changed"] = changed
    step(log, "demo", [py, "-m", "ShapSegExplainLib.cli", "demo", "--out", str(args.out / "demo")], args.out, env=env)
    (args.out / "summary.json").write_text(json.dumps(log, indent=1))
    print(json.dumps({k: v for k, v in log.items() if k not in ("pins", "versions")}, indent=1))
    print("nnunetv2", log["versions"].get("nnunetv2"), "torch", log["versions"].get("torch"))
    sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
