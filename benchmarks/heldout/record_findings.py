"""The held-out collection, step 2: each finding's organ-level game, every coalition played.

For a finding of ``findings.json`` the default run is set up through the engine (hybrid
players, context player, proxy tolerance and value as the default job has them; the ROI
mask, ``--anatomy`` and the reference from the finding), and the game of its coarse level
(the tree's roots: organ units and the context) is played on all 2^M coalitions: the real
game (exact, no proxy) and the proxy game the default plays beside it (the tiles under the
proxy tolerance frozen), both from the same tile memo, so the proxy costs no extra forward.
Stored in ``benchmarks/games/heldout/ID.npz``: ``values`` and ``proxy`` (2^M,) indexed by
the coalition's bitmask (player i = bit i), the exact Shapley values, which roots each ROI
tile sees and which tiles the proxy freezes (what a coalition costs through the memo:
``benchmarks/heldout/evaluate.py`` counts forwards from them), player names and volumes.

    python benchmarks/heldout/record_findings.py [--only ID ...] [--split tuning|heldout] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
GAMES = ROOT / "benchmarks" / "games" / "heldout"
MODEL = ROOT.parent / "shared" / "models" / "abdo7-small"

from ShapSegExplainLib.run.explain import prepare_inputs, value_function_of  # noqa: E402
from ShapSegExplainLib.run.job import ExplainJob  # noqa: E402
from ShapSegExplainLib.run.state import Run  # noqa: E402
from ShapSegExplainLib.shapley.estimator import exact_shapley  # noqa: E402
from ShapSegExplainLib.shapley.hierarchy import atoms_present  # noqa: E402


def default_job(f, work: Path, out: Path) -> ExplainJob:
    """The job a reader runs on the finding: every setting at its default but the finding's own."""
    g = f if isinstance(f, dict) else f.__dict__
    return ExplainJob(ct=str(work / g["ct"]), model=str(MODEL), target=g["target"], out=str(out),
                      roi_mask=str(work / g["roi_mask"]), anatomy=str(work / g["anatomy"]),
                      anatomy_labels=str(work / g["anatomy_labels"]), reference=str(work / g["reference"]),
                      value=g["value"], device="cpu").check()


@dataclass
class Setup:
    """The default run's coarse game of one finding, ready to play."""
    job: ExplainJob
    m: int
    names: list[str]
    ml: list[float]
    membership: np.ndarray          # (M, atoms)
    tile_roots: np.ndarray          # (tiles, M): which roots each ROI tile sees
    frozen: np.ndarray              # (tiles,): frozen in the proxy game
    ev: object
    vf: object

    def enumeration_forwards(self) -> int:
        return int(sum(2 ** int(k) for k in self.tile_roots.sum(axis=1)))

    def play(self, masks: np.ndarray, proxy: bool) -> np.ndarray:
        bits = ((masks[:, None] >> np.arange(self.m)) & 1).astype(bool)
        return np.asarray(self.vf(self.ev.evaluate(atoms_present(bits, self.membership), proxy=proxy)), float)


def setup(f, work: Path, tmp: Path) -> Setup:
    from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator
    job = default_job(f, work, tmp / "out")
    i = prepare_inputs(Run(job, lambda e: None, lambda: False))
    tree, roots = i.players.tree, i.players.tree.roots()
    membership = tree.membership(roots)
    ev = CoalitionEvaluator(i.model, i.case, i.players.plan, tree.atoms.ids, tree.atoms.n_players,
                            proxy_tolerance=job.proxy_tolerance, memory_budget_bytes=4 << 30,
                            unperturbed=i.predictor.outputs)
    root_of = membership.argmax(axis=0)
    tile_roots = np.zeros((len(ev.tile_players), len(roots)), bool)
    for pos, atoms in enumerate(ev.tile_players):
        tile_roots[pos, root_of[atoms]] = True
    frozen = np.array([pos in ev.proxy_frozen for pos in range(len(ev.tile_players))])
    vf = value_function_of(job, i.model, i.case, i.target, i.roi, ev.evaluate(np.ones((1, tree.atoms.n_players), bool)))
    rows = i.players.rows
    return Setup(job, len(roots), [r["name"] for r in rows], [float(r.get("ml", np.nan)) for r in rows],
                 membership, tile_roots, frozen, ev, vf)


def record(f: dict, work: Path, batch: int = 32) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = setup(f, work, Path(tmp))
        n = 2 ** s.m
        values, proxy = np.empty(n), np.empty(n)
        f0, t0 = s.ev.counters.tile_forwards, time.perf_counter()
        for i in range(0, n, batch):
            masks = np.arange(i, min(n, i + batch))
            values[masks] = s.play(masks, proxy=False)
            proxy[masks] = s.play(masks, proxy=True)          # its unfrozen tiles are in the memo now
        forwards, seconds = s.ev.counters.tile_forwards - f0, time.perf_counter() - t0
    meta = {**f, "n_players": s.m, "tile_forwards": int(forwards), "seconds": round(seconds, 1),
            "command": f"python benchmarks/heldout/record_findings.py --only {f['id']}"}
    GAMES.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GAMES / f"{f['id']}.npz", values=values, proxy=proxy, shapley=exact_shapley(values, s.m),
                        tile_roots=s.tile_roots, frozen=s.frozen, names=np.array(s.names), ml=np.array(s.ml),
                        meta=np.array(json.dumps(meta)))
    print(f"{f['id']}: M={s.m}, {forwards} tile forwards, {seconds:.0f} s", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "shapseg-heldout")
    ap.add_argument("--split", choices=["tuning", "heldout"], help="only this part of split.json")
    ap.add_argument("--skip-done", action="store_true", help="leave games already recorded")
    args = ap.parse_args(argv)
    findings = json.loads((HERE / "findings.json").read_text())["findings"]
    split = json.loads((HERE / "split.json").read_text())["split"]
    for f in findings:
        if (args.only and f["id"] not in args.only) or (args.split and split[f["id"]] != args.split):
            continue
        if args.skip_done and (GAMES / f"{f['id']}.npz").exists():
            continue
        record(f, args.work)


if __name__ == "__main__":
    main()
