"""The held-out collection, step 3: coarse-level estimators on the recorded findings.

Each recorded game (``record_findings.py``) is the default run's coarse game on every
coalition, real and proxy, with which roots each ROI tile sees. An estimator plays it
offline; its tile forwards are counted by a model of the engine's memo (a tile runs once per
set of its absent roots; the full image's tiles are the setup's; the proxy's frozen tiles
never run in the proxy game), which is what the engine's ``CoalitionEvaluator`` does.
Per finding and estimator: the exact organ-level top 3 (by |φ|) against the estimate's,
summed |φ − exact| as a share of Σ|exact|, the 95 % intervals' coverage, the forwards.
Tuning and held-out findings (``split.json``, written before any tuning) are tabled apart.

    python benchmarks/heldout/evaluate.py [--estimators default ...] [--seeds 5] [--split heldout]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
GAMES = ROOT / "benchmarks" / "games" / "heldout"

from ShapSegExplainLib.shapley import hierarchy  # noqa: E402
from ShapSegExplainLib.shapley.proxy import with_proxy  # noqa: E402
from ShapSegExplainLib.shapley.estimator import shapley_values  # noqa: E402

Z95 = 1.959964


@dataclass
class Recorded:
    """One recorded coarse game and a memo model that counts its tile forwards."""
    id: str
    values: np.ndarray
    proxy_values: np.ndarray
    shapley: np.ndarray
    tile_roots: np.ndarray
    frozen: np.ndarray
    names: list[str]
    meta: dict
    seen: set = field(default_factory=set)
    forwards: int = 0

    @property
    def m(self) -> int:
        return self.tile_roots.shape[1]

    @classmethod
    def load(cls, path: Path) -> "Recorded":
        z = np.load(path)
        return cls(path.stem, z["values"], z["proxy"], z["shapley"], z["tile_roots"], z["frozen"],
                   [str(n) for n in z["names"]], json.loads(str(z["meta"])))

    def reset(self) -> None:
        self.seen, self.forwards = set(), 0

    def _masks(self, coalitions: np.ndarray) -> np.ndarray:
        return (np.asarray(coalitions, bool).astype(np.int64) << np.arange(self.m)).sum(axis=1)

    def _count(self, coalitions: np.ndarray, proxy: bool) -> None:
        for c in np.asarray(coalitions, bool):
            for t in range(len(self.tile_roots)):
                if proxy and self.frozen[t]:
                    continue
                key = (t, (~c & self.tile_roots[t]).tobytes())
                if (~c & self.tile_roots[t]).any() and key not in self.seen:
                    self.seen.add(key)
                    self.forwards += 1

    def game(self, coalitions: np.ndarray) -> np.ndarray:
        self._count(coalitions, False)
        return self.values[self._masks(coalitions)]

    def proxy(self, coalitions: np.ndarray) -> np.ndarray:
        self._count(coalitions, True)
        return self.proxy_values[self._masks(coalitions)]


def default(g: Recorded, seed: int):
    """Today's default coarse level (``hierarchy.tree_shapley``'s first game)."""
    return with_proxy(g.game, g.proxy, g.m, hierarchy.level_budget(g.m), 6, seed=seed, threshold=0.01,
                      estimator="gp")


def exact(g: Recorded, seed: int):
    return shapley_values(g.game, g.m, 2 ** g.m, seed=seed)


def gp_budget(per_player: int) -> Callable:
    def run(g: Recorded, seed: int):
        return with_proxy(g.game, g.proxy, g.m, max(per_player * g.m, 2 * g.m + 2), 6, seed=seed, threshold=0.01,
                          estimator="gp")
    return run


def proxy_enumerated(residual: int | None):
    """The proxy game enumerated (its unfrozen tiles only), the residual from exact coalitions."""
    def run(g: Recorded, seed: int):
        return with_proxy(g.game, g.proxy, g.m, 2 ** g.m, residual, seed=seed, threshold=0.01, estimator="gp",
                          enumerate_proxy=True)
    return run


def enumeration_forwards(g: Recorded) -> int:
    return int(sum(2 ** int(k) - 1 for k in g.tile_roots.sum(axis=1)))


def coarse_level(exact_forwards: int, tolerance: float = hierarchy.SUMMED_SE, change_se: float = hierarchy.CHANGE_SE,
                 estimator: str = "gp"):
    """The coarse level as ``hierarchy.coarse_game`` plays it (``exact_forwards`` 0: always sampled,
    the path taken where enumerating is dear; ``tolerance``: ``hierarchy.settled``'s share of Σ|φ|;
    ``change_se``: the share of the change a doubled answer's SE reports; ``estimator``: the fit)."""
    from ShapSegExplainLib.players.maps import CONTEXT_NAME

    def run(g: Recorded, seed: int):
        games = hierarchy.AtomGames(g.game, g.proxy, None, 6, lambda membership: enumeration_forwards(g))
        namable = np.array([n != CONTEXT_NAME for n in g.names])
        return hierarchy.coarse_game(games, np.eye(g.m, dtype=bool), hierarchy.level_budget(g.m), seed,
                                     lambda: None, {"threshold": 0.01, "estimator": estimator}, exact_forwards, namable,
                                     tolerance, change_se)
    return run


ESTIMATORS: dict[str, Callable] = {"new": coarse_level(hierarchy.EXACT_ROOT_FORWARDS), "sampled": coarse_level(0),
                                   "new_eig": coarse_level(hierarchy.EXACT_ROOT_FORWARDS, estimator="gp-eig"),
                                   "sampled_eig": coarse_level(0, estimator="gp-eig"),
                                   "default": default, "exact": exact, "gp8": gp_budget(8), "gp16": gp_budget(16),
                                   "proxy_enum": proxy_enumerated(None), "proxy_enum6": proxy_enumerated(6)}


def top3(phi: np.ndarray) -> set[int]:
    return set(np.argsort(-np.abs(phi), kind="stable")[:3].tolist())


def score(g: Recorded, res) -> dict:
    truth = g.shapley
    err = np.abs(res.values - truth)
    scale = float(np.abs(truth).sum())
    covered = err <= Z95 * res.se + 1e-9 * max(scale, 1e-12)
    return {"top3": top3(res.values) == top3(truth), "error": float(err.sum() / scale) if scale else 0.0,
            "coverage": float(covered.mean()), "n": int(len(truth)), "covered": int(covered.sum()),
            "forwards": g.forwards, "coalitions": int(res.n_evaluations + res.proxy_evaluations)}


def evaluate(games: list[Recorded], names: list[str], seeds: int) -> dict:
    out: dict = {}
    for g in games:
        for name in names:
            rows = []
            for seed in range(seeds):
                g.reset()
                rows.append(score(g, ESTIMATORS[name](g, seed)))
            out[(g.id, name)] = rows
    return out


def table(games: list[Recorded], names: list[str], results: dict, split: dict) -> str:
    lines = []
    for part in ("tuning", "heldout"):
        part_games = [g for g in games if split.get(g.id) == part]
        if not part_games:
            continue
        lines += [f"\n### {part} ({len(part_games)} findings; mean over seeds per finding)\n",
                  "| finding | M | enum. fwd | " + " | ".join(f"{n}: top-3 · err · cov · fwd" for n in names) + " |",
                  "|---|---|---|" + "---|" * len(names)]
        for g in part_games:
            cells = []
            for n in names:
                r = results[(g.id, n)]
                cells.append(f"{np.mean([x['top3'] for x in r]):.0%} · {np.mean([x['error'] for x in r]):.0%} · "
                             f"{np.mean([x['coverage'] for x in r]):.2f} · {np.mean([x['forwards'] for x in r]):.0f}")
            lines.append(f"| {g.id} | {g.m} | {g.meta['tile_forwards']} | " + " | ".join(cells) + " |")
        summary = []
        for n in names:
            r = [x for g in part_games for x in results[(g.id, n)]]
            worst = max(np.mean([x["error"] for x in results[(g.id, n)]]) for g in part_games)
            summary.append(f"{np.mean([x['top3'] for x in r]):.0%} · max {worst:.0%} · "
                           f"{sum(x['covered'] for x in r) / sum(x['n'] for x in r):.2f} · "
                           f"{np.mean([x['forwards'] for x in r]):.0f}")
        lines.append("| **all** | | | " + " | ".join(summary) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--split", choices=["tuning", "heldout", "both"], default="tuning",
                    help="which findings to play (held-out: only once the defaults are chosen)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    split = json.loads((HERE / "split.json").read_text())["split"]
    games = [Recorded.load(p) for p in sorted(GAMES.glob("*.npz"))
             if args.split == "both" or split.get(p.stem) == args.split]
    results = evaluate(games, args.estimators, args.seeds)
    text = table(games, args.estimators, results, split)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
