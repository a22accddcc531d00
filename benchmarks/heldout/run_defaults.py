"""The held-out collection, step 4: the default run itself on each finding, through the engine.

Every setting at its default but the finding's own (``record_findings.default_job``) and
``--faithfulness-steps 0`` (the curves cost the same forwards in every setup compared, after
the values). Per finding: tile forwards (sampling and in all), seconds, the organ-level
answer (the coarse players' φ, each the exact sum of its pieces) against the exact values
of ``benchmarks/games/heldout``: top 3 by |φ| as a set, summed |φ − exact| / Σ|exact|,
coverage of the 95 % intervals, and what the run says it can name (``display.resolution_lines``).
``--lib`` runs another checkout's engine (an earlier release side by side).

    python benchmarks/heldout/run_defaults.py --split heldout --out benchmarks/results/heldout/new.jsonl
    python benchmarks/heldout/run_defaults.py --lib ../old --split heldout --out .../old.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GAMES = HERE.parents[1] / "benchmarks" / "games" / "heldout"


def organ_level(rows: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = list(dict.fromkeys(r.get("coarse", r["name"]) for r in rows))
    phi = np.array([sum(r["phi"] for r in rows if r.get("coarse", r["name"]) == n) for n in names])
    se = np.array([np.sqrt(sum((r["se"] or 0.0) ** 2 for r in rows if r.get("coarse", r["name"]) == n))
                   for n in names])
    return names, phi, se


def compare(expl: dict, game: Path) -> dict:
    z = np.load(game)
    exact = dict(zip([str(n) for n in z["names"]], z["shapley"]))
    names, phi, se = organ_level(expl["players"])
    truth = np.array([exact[n] for n in names])
    err = np.abs(phi - truth)
    top = lambda v: set(np.argsort(-np.abs(v), kind="stable")[:3].tolist())    # noqa: E731
    covered = err <= 1.96 * se + 1e-9 * np.abs(truth).sum()
    return {"top3": top(phi) == top(truth), "error": float(err.sum() / np.abs(truth).sum()),
            "coverage": float(covered.mean()), "players": len(names)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", type=Path, default=HERE.parents[1], help="the checkout whose engine runs")
    ap.add_argument("--split", choices=["tuning", "heldout"], default="heldout")
    ap.add_argument("--only", nargs="+", help="these findings only (e.g. two engines run finding by finding)")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "shapseg-heldout")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.lib.resolve()))
    import ShapSegExplainLib
    from ShapSegExplainLib.run.explain import run_explanation       # before record_findings puts this checkout first
    sys.path.insert(1, str(HERE))
    from record_findings import default_job
    from dataclasses import replace
    engine = str(Path(ShapSegExplainLib.__file__).resolve().parent)
    findings = json.loads((HERE / "findings.json").read_text())["findings"]
    split = json.loads((HERE / "split.json").read_text())["split"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as log:
        for f in findings:
            if split[f["id"]] != args.split or not (GAMES / f"{f['id']}.npz").exists() or \
                    (args.only and f["id"] not in args.only):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                job = replace(default_job(f, args.work, Path(tmp) / "out"), faithfulness_steps=0)
                expl = run_explanation(job)
            try:
                from ShapSegExplainLib.display import resolution_lines
                said = resolution_lines(expl["players"])
            except ImportError:
                said = []
            st = expl["stats"]
            row = {"id": f["id"], "engine": engine, "tile_forwards": st["tile_forwards"],
                   "sampling_forwards": st.get("tile_forwards_sampling"), "seconds": st["seconds"],
                   "coalitions": expl["shapley"]["n_evaluations"], "said": said, **compare(expl, GAMES / f"{f['id']}.npz")}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
