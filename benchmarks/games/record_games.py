"""Record real segmentation games with exact Shapley values (``benchmarks/games/*.npz``).

Every coalition of M ≤ 14 players (organ units, coarse FCC or hybrid cells) is played
once through the engine (plain game: no pruning, no proxy; the memo re-runs a tile only
for a new set of absent players inside it), and all five values are read from the same
fused logits: tp, dice, soft_dice, fp, soft_fp (raw; a normalised game is the raw one
÷ v(N), so its Shapley values are φ ÷ v(N)). Stored per game: ``values`` (2^M, 5) float64
indexed by the coalition's bitmask (player i = bit i), the exact Shapley values (5, M),
which players each ROI tile sees (what a coalition costs through the memo),
player names and volumes, and what it cost. ``Testing/fixtures/recorded_games.py`` loads
them as ``game(coalitions) -> values``.

    python benchmarks/games/record_games.py [--games NAME ...] [--dry-run]

``--dry-run`` prints each game's players and the tile forwards enumeration needs
(Σ over ROI tiles of 2^(players in the tile)). On 2 CPU cores the real CT plays about
8 tile forwards a second.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ShapSegExplainLib.choices import VALUES
from ShapSegExplainLib.run.explain import prepare_inputs
from ShapSegExplainLib.run.state import Run
from ShapSegExplainLib.run.job import ExplainJob
from ShapSegExplainLib.shapley.estimator import exact_shapley

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared"
CT = SHARED / "data" / "totalseg-example" / "ct.nii.gz"
SEG = SHARED / "data" / "totalseg-example" / "seg_total.nii.gz"
MODEL = SHARED / "models" / "abdo7-small"
TOTALSEG = {"spleen": 1, "kidney_left": 3, "liver": 5}
MAX_PLAYERS = 14


@dataclass
class GameSpec:
    """One recorded game: a case, a target, an ROI box (network voxels x0 y0 z0 x1 y1 z1;
    None = the demo's drawn ROI) and the players."""
    case: str                      # "ct" (the shared CT, abdo7-small) or "demo" (phantom, demo model)
    target: str
    roi_box: list[int] | None
    players: dict = field(default_factory=dict)    # ExplainJob player fields


GAMES = {   # player sizes chosen so that M <= 14 and enumeration fits in minutes (2 cores)
    "ct_kidney_edge_hybrid": GameSpec("ct", "kidney_left", [30, 27, 8, 35, 32, 13],
                                      {"players": "hybrid", "spacing_mm": 33.0}),
    "ct_spleen_hybrid": GameSpec("ct", "spleen", [13, 27, 14, 18, 32, 19],
                                 {"players": "hybrid", "spacing_mm": 30.0, "margin_mm": 15.0}),
    "ct_kidney_box_organ": GameSpec("ct", "kidney_left", [23, 27, 0, 44, 49, 22], {"players": "organ"}),
    "demo_fp_hybrid": GameSpec("demo", "kidney_left", None, {"players": "hybrid", "spacing_mm": 17.0, "margin_mm": 5.0}),
}


def job_of(spec: GameSpec, work: Path) -> ExplainJob:
    """The engine job the game is played under (levels=1: flat players; exact settings)."""
    common = dict(levels=1, mirroring=False, device="cpu", tolerance=0.0,
                  proxy_tolerance=0.0, context_player=False, **spec.players)
    if spec.case == "demo":
        from ShapSegExplainLib.demo.demo_case import demo_job, write_demo_case
        return demo_job(write_demo_case(work / "demo"), work / "out", **common)
    seg = sitk.ReadImage(str(SEG))
    ref = work / "reference.nii.gz"
    sitk.WriteImage(sitk.Cast(seg == TOTALSEG[spec.target], sitk.sitkUInt8), str(ref), True)
    return ExplainJob(ct=str(CT), model=str(MODEL), target=spec.target, out=str(work / "out"), roi_box=spec.roi_box,
                      reference=str(ref), **common).check()


def setup(spec: GameSpec, work: Path):
    """Model, case, players and evaluator of a game, as ``run.explain`` builds them."""
    from ShapSegExplainLib.nnunet.evaluator import CoalitionEvaluator
    from ShapSegExplainLib.run.explain import reference_in_roi

    job = job_of(spec, work)
    i = prepare_inputs(Run(job, lambda e: None, lambda: False))
    m = i.players.pmap.n_players
    ev = CoalitionEvaluator(i.model, i.case, i.players.plan, i.players.pmap.ids, m, memory_budget_bytes=1 << 30)
    reference = reference_in_roi(i.case, job.reference, i.roi)
    return job, i.model, i.case, i.target, i.players, ev, reference


def enumerate_game(model, case, target, ev, reference, m: int, batch: int = 64) -> np.ndarray:
    """Values (2^M, 5) of every coalition, row = bitmask (player i = bit i)."""
    from ShapSegExplainLib.run.explain import value_function_for

    unit_ml = float(np.prod(case.spacing)) / 1000.0
    full = ev.evaluate(np.ones((1, m), bool))
    vfs = [value_function_for(model, v, target, full, unit_ml, reference) for v in VALUES]
    masks = np.arange(2 ** m)
    bits = ((masks[:, None] >> np.arange(m)) & 1).astype(bool)
    out = np.empty((2 ** m, len(VALUES)))
    t0 = time.perf_counter()
    for i in range(0, 2 ** m, batch):
        logits = ev.evaluate(bits[i:i + batch])
        out[i:i + batch] = np.stack([vf.raw(logits) for vf in vfs], axis=1)
        print(f"  {min(i + batch, 2 ** m)}/{2 ** m} coalitions, {ev.counters.tile_forwards} tile forwards, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    return out


def record(name: str, dry_run: bool) -> None:
    spec = GAMES[name]
    with tempfile.TemporaryDirectory() as tmp:
        job, model, case, target, players, ev, reference = setup(spec, Path(tmp))
        m = players.pmap.n_players
        per_tile = ev.players_per_tile()
        need = int(sum(2 ** k for k in per_tile))
        print(f"{name}: M={m}, {len(per_tile)} tiles, players per tile {per_tile}, "
              f"enumeration needs {need} tile forwards", flush=True)
        if dry_run:
            return
        if m > MAX_PLAYERS:
            raise SystemExit(f"{name}: {m} players, more than {MAX_PLAYERS}")
        t0 = time.perf_counter()
        values = enumerate_game(model, case, target, ev, reference, m)
        seconds = time.perf_counter() - t0
    phi = np.stack([exact_shapley(values[:, j], m) for j in range(values.shape[1])])
    meta = {"name": name, "case": spec.case, "target": spec.target, "roi_box": spec.roi_box, **spec.players,
            "model": "abdo7-small" if spec.case == "ct" else "demo", "n_players": m, "values": list(VALUES),
            "tiles": len(per_tile), "players_per_tile": per_tile, "tile_forwards": int(ev.counters.tile_forwards),
            "seconds": round(seconds, 1), "command": "python benchmarks/games/record_games.py --games " + name}
    tile_players = np.zeros((len(per_tile), m), bool)     # which players each ROI tile sees (its memo key)
    for pos, ids in enumerate(ev.tile_players):
        tile_players[pos, ids] = True
    np.savez_compressed(HERE / f"{name}.npz", values=values, shapley=phi, tile_players=tile_players,
                        names=np.array([r["name"] for r in players.rows]),
                        ml=np.array([r.get("ml", np.nan) for r in players.rows], float),
                        meta=np.array(json.dumps(meta)))
    print(f"{name}: wrote {HERE / (name + '.npz')} ({seconds:.0f} s, {ev.counters.tile_forwards} tile forwards)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", nargs="+", default=list(GAMES), choices=list(GAMES))
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    for name in args.games:
        record(name, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
