"""Equal-budget accuracy of the Shapley estimator against every Shapley-value approximator
of shapiq 1.8 (and shap's KernelExplainer), on synthetic and on recorded real games.

Peers are benchmark dependencies only, in their own Python 3.12 environment (shapiq ≥ 1.5
needs it):

    python3.12 -m venv .venv-bench
    .venv-bench/bin/pip install 'shapiq[proxy,sparse,shapleig]==1.8.0' shap
    .venv-bench/bin/python benchmarks/bench_shapley.py --family real --json real.json
    .venv-bench/bin/python benchmarks/bench_shapley.py --family unanimity --json unanimity.json

Families: ``unanimity`` (sums of 3M unanimity games up to order 3, exact φ in closed form),
``smooth`` (M ≤ 20: squashed random quadratics plus a size threshold, every order present,
exact φ by enumeration) and ``real`` (``benchmarks/games/*.npz``: every coalition of a real
segmentation game played through the engine, five values each; a cell is one recorded
case at one budget, its error the mean over the case's values and the seeds). A budget
that covers all 2^M coalitions is enumeration, not estimation, and is left out. Error:
‖φ̂ − φ‖₂/‖φ‖₂. Every method gets the same budget of game evaluations; the evaluations it
used are reported, and on the real games the tile forwards the engine's memo would run for
the coalitions it asked. A method that raises, or needs more than ``--max-seconds`` for one
run, is listed with that reason instead of a number. Calibration: the share of players
whose exact φ lies inside our nominal 95 % interval (φ̂ ± 1.96·SE).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Testing"))        # test fixtures: the games

from fixtures.games import smooth_game, unanimity_game  # noqa: E402
from fixtures.recorded_games import recorded_games  # noqa: E402
from ShapSegExplainLib.shapley.estimator import shapley_values  # noqa: E402

OURS = "ShapSegExplain (GP)"
Z95 = 1.959963984540054


# ----- methods: (game, m, budget, seed) -> (φ̂, SE or None) ------------------------------------
def ours(estimator: str):
    def run(game, m, budget, seed):
        res = shapley_values(game, m, budget, seed=seed, threshold=0.0, resamples=0, estimator=estimator)
        return res.values, res.se
    return run


# name -> constructor (shapiq, m, seed): shapiq 1.8's defaults, except pairing for KernelSHAP and
# PolySHAP, order 2 for PolySHAP and kADDSHAP, order 1 (= SV) for the interaction-capable ones,
# and ShaplEIG's staged refits (its documented setting for large budgets)
SHAPIQ = {
    "KernelSHAP (paired)": lambda s, m, r: s.KernelSHAP(n=m, pairing_trick=True, random_state=r),
    "LeverageSHAP": lambda s, m, r: s.LeverageSHAP(n=m, random_state=r),
    "RegressionMSR": lambda s, m, r: s.RegressionMSR(n=m, index="SV", random_state=r),
    "ProxySHAP": lambda s, m, r: s.ProxySHAP(n=m, max_order=1, index="SV", random_state=r),
    "PolySHAP (order 2)": lambda s, m, r: s.PolySHAP(n=m, max_order=2, pairing_trick=True, random_state=r),
    "OddSHAP": lambda s, m, r: s.OddSHAP(n=m, random_state=r),
    "ShaplEIG": lambda s, m, r: s.ShaplEIG(n=m, random_state=r, show_progress=False, refit="decaying"),
    "kADDSHAP": lambda s, m, r: s.kADDSHAP(n=m, max_order=2, random_state=r),
    "UnbiasedKernelSHAP": lambda s, m, r: s.UnbiasedKernelSHAP(n=m, random_state=r),
    "SVARM": lambda s, m, r: s.SVARM(n=m, random_state=r),
    "PermutationSamplingSV": lambda s, m, r: s.PermutationSamplingSV(n=m, random_state=r),
    "StratifiedSamplingSV": lambda s, m, r: s.StratifiedSamplingSV(n=m, random_state=r),
    "OwenSamplingSV": lambda s, m, r: s.OwenSamplingSV(n=m, random_state=r),
    "SPEX": lambda s, m, r: s.SPEX(n=m, max_order=1, index="SV", random_state=r),
    "ProxySPEX": lambda s, m, r: s.ProxySPEX(n=m, max_order=1, index="SV", random_state=r),
}


def shapiq_method(name: str):
    def run(game, m, budget, seed):
        import shapiq
        approx = SHAPIQ[name](shapiq, m, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iv = approx.approximate(budget, lambda c: game(np.asarray(c, bool)))
        return np.array([iv[(i,)] for i in range(m)]), None
    return run


def shap_kernel(game, m, budget, seed):
    import shap
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = shap.KernelExplainer(lambda x: game(x > 0.5), np.zeros((1, m)))
        phi = ex.shap_values(np.ones((1, m)), nsamples=budget, l1_reg=False, silent=True)
    return np.asarray(phi).reshape(-1), None


SLOW = {"shapiq ShaplEIG"}     # minutes per run: only the first --slow-seeds seeds of each game

TREES = "ShapSegExplain (GP + trees)"
EIG = "ShapSegExplain (GP-EIG)"
METHODS = {OURS: ours("gp"), TREES: ours("gp-trees"), EIG: ours("gp-eig"), "ShapSegExplain (WLS)": ours("wls"),
           **{f"shapiq {k}": shapiq_method(k) for k in SHAPIQ}, "shap KernelExplainer": shap_kernel}


# ----- games ---------------------------------------------------------------------------------------
class Logged:
    """A game that keeps every coalition asked (for counts and the memo's tile forwards)."""

    def __init__(self, game, m: int):
        self.game, self.m, self.asked = game, m, []
        self.expired: str | None = None          # set by ``deadline``

    def __call__(self, coalitions):
        if self.expired:
            raise TimeoutError(self.expired)
        c = np.asarray(coalitions, bool).reshape(-1, self.m)
        self.asked.append(c)
        return np.asarray(self.game(c), float)

    @property
    def coalitions(self) -> np.ndarray:
        return np.concatenate(self.asked) if self.asked else np.zeros((0, self.m), bool)


@dataclass
class Case:
    """One cell's games: the label, the players, the games (one per seed or per value)."""
    label: str
    m: int
    games: list = field(default_factory=list)     # (seed, game, exact φ)
    tiles: object = None                            # a recorded game: counts tile forwards


def synthetic_cases(family: str, players: list[int], seeds: int) -> list[Case]:
    cases = []
    for m in players:
        if family == "smooth":
            if m > 20:
                raise SystemExit("--family smooth needs --players <= 20 (exact values by enumeration)")
            games = [smooth_game(m, 1000 + s) for s in range(seeds)]
            truths = [shapley_values(g, m, 2 ** m).values for g in games]
        else:
            games = [unanimity_game(m, 3, seed=1000 + s) for s in range(seeds)]
            truths = [g.shapley() for g in games]
        cases.append(Case(f"{family} M={m}", m, [(s, g, t) for s, (g, t) in enumerate(zip(games, truths))]))
    return cases


def real_cases(seeds: int, min_players: int) -> list[Case]:
    by_name: dict[str, Case] = {}
    for g in recorded_games(min_players):
        case = by_name.setdefault(g.name, Case(g.name, g.m, tiles=g))
        case.games += [(s, g, g.phi) for s in range(seeds)]
        first, second, higher = order_shares(g.table, g.m)
        print(f"{g.label}: M={g.m}, Shapley weight by interaction order 1 / 2 / 3+: "
              f"{first:.2f} / {second:.2f} / {higher:.2f}", flush=True)
    return list(by_name.values())


@contextlib.contextmanager
def deadline(seconds: float, game: "Logged"):
    """Raise TimeoutError in this (main) thread after ``seconds`` (SIGALRM), and from then on
    at every game evaluation: a peer that would run for hours is stopped and listed as too
    slow, even one whose inner optimiser catches the first exception (botorch's fit does)."""
    def expire(*_):
        game.expired = f"over {seconds:.0f} s for one run"
        raise TimeoutError(game.expired)
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def order_shares(table: np.ndarray, m: int) -> list[float]:
    """Share of Σ_T (d_T/|T|)²·|T| (each dividend's weight in the Shapley values) carried by
    interactions of order 1, 2, 3 and more: how far from additive a recorded game is. The
    Möbius transform by the fast subset-sum butterfly."""
    d = np.array(table, dtype=np.float64)
    for i in range(m):
        bit = 1 << i
        idx = np.arange(len(d))
        has = (idx & bit) != 0
        d[has] -= d[idx[has] ^ bit]
    size = np.array([bin(i).count("1") for i in range(len(d))])
    w = np.where(size > 0, d ** 2 / np.maximum(size, 1), 0.0)
    total = w.sum() or 1.0
    return [float(w[size == 1].sum() / total), float(w[size == 2].sum() / total), float(w[size >= 3].sum() / total)]


# ----- the run ---------------------------------------------------------------------------------------
def run_cell(case: Case, budget: int, methods: list[str], max_seconds: float, slow_seeds: int,
             too_slow: dict) -> dict:
    """One case at one budget, every method on every game. ``too_slow`` (method -> (budget,
    reason)) carries a timeout to every later cell of the family with at least that budget:
    the peer's arithmetic grows with the evaluations."""
    errors = {k: [] for k in methods}
    by_value: dict[str, dict[str, list]] = {}       # a recorded case: errors per value too
    forwards = {k: [] for k in methods}
    used = {k: 0 for k in methods}
    secs = {k: 0.0 for k in methods}
    refused = {k: why for k, (at, why) in too_slow.items() if k in methods and budget >= at}
    inside = {OURS: [0, 0], TREES: [0, 0], EIG: [0, 0]}       # (inside, counted) of the nominal 95 % intervals
    for seed, game, truth in case.games:
        for name in methods:
            if name in refused or (name in SLOW and seed >= slow_seeds):
                continue
            logged = Logged(game, case.m)
            t0 = time.perf_counter()
            try:
                with deadline(max_seconds, logged):
                    est, se = METHODS[name](logged, case.m, budget, seed)
                if logged.expired:             # it swallowed the timeout and finished late
                    raise TimeoutError(logged.expired)
            except Exception as e:
                if not logged.expired:         # a peer that refuses this budget or game: its reason, once
                    refused[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}"
                    continue
                refused[name] = f"too slow: {logged.expired} (M = {case.m}, budget {budget})"
                too_slow[name] = (budget, refused[name])
                continue
            dt = time.perf_counter() - t0
            secs[name] += dt
            asked = logged.coalitions
            used[name] = max(used[name], len(asked))
            if case.tiles is not None:
                forwards[name].append(case.tiles.tile_forwards(asked))
            errors[name].append(float(np.linalg.norm(est - truth) / np.linalg.norm(truth)))
            if hasattr(game, "value"):
                by_value.setdefault(game.value, {}).setdefault(name, []).append(errors[name][-1])
            if name in inside and se is not None:
                inside[name][0] += int(np.sum(np.abs(est - truth) <= Z95 * se + 1e-12))
                inside[name][1] += len(truth)
    mean = {k: float(np.mean(v)) for k, v in errors.items() if v and k not in refused}
    row = {"case": case.label, "players": case.m, "budget": budget, "mean_rel_error": mean, "refused": refused,
           "runs": {k: len(errors[k]) for k in mean}, "sd_rel_error": {k: float(np.std(errors[k])) for k in mean},
           "seconds": {k: secs[k] / max(1, len(errors[k])) for k in mean},
           "max_evaluations": {k: used[k] for k in mean},
           "coverage95": inside[OURS][0] / inside[OURS][1] if inside[OURS][1] else None,
           "coverage_n": inside[OURS][1],
           "coverage95_by_method": {k: i / n for k, (i, n) in inside.items() if n}}
    if by_value:
        row["by_value"] = {v: {k: float(np.mean(e)) for k, e in d.items() if k in mean} for v, d in by_value.items()}
    if case.tiles is not None:
        row["mean_tile_forwards"] = {k: float(np.mean(forwards[k])) for k in mean}
    peers = {k: v for k, v in mean.items() if not k.startswith("ShapSegExplain")}
    if peers:
        row["best_peer"] = min(peers, key=peers.get)
        row["winner"] = min(mean, key=mean.get)
    return row


def print_row(row: dict) -> None:
    mean = row["mean_rel_error"]
    best = row.get("best_peer")
    verdict = "" if not best else ("ours <= best peer" if mean.get(OURS, np.inf) <= mean[best] else
                                   f"PEER BETTER ({best})")
    cells = "  ".join(f"{k}: {v:.4f}" for k, v in mean.items())
    cov = "".join(f"  coverage95 {short(k)} {c:.3f}" for k, c in row.get("coverage95_by_method", {}).items())
    print(f"{row['case']}  budget {row['budget']}  {cells}  [{verdict}]{cov}", flush=True)
    for k, why in row["refused"].items():
        print(f"    {k}: {why}", flush=True)


def short(name: str) -> str:
    return name.replace("shapiq ", "").replace("ShapSegExplain", "ours").replace(" KernelExplainer", "")


def markdown(rows: list[dict]) -> str:
    """docs/benchmarks.md's table: a column per cell (case, budget), a row per method (mean error,
    the cell's best in bold), the winner last; peers that gave no number, with their reason,
    below."""
    names = [k for k in METHODS if any(k in r["mean_rel_error"] for r in rows)]
    lines = ["| method | " + " | ".join(f"{r['case']} {r['factor']}M" for r in rows) + " |",
             "|---" * (len(rows) + 1) + "|"]
    for k in names:
        cells = []
        for r in rows:
            err = r["mean_rel_error"]
            cells.append("–" if k not in err else ("**%.3f**" if err[k] == min(err.values()) else "%.3f") % err[k])
        lines.append(f"| {short(k)} | " + " | ".join(cells) + " |")
    lines.append("| winner | " + " | ".join(short(r["winner"]) for r in rows) + " |")
    if all("mean_tile_forwards" in r for r in rows):      # real games: what the coalitions cost through the memo
        for label, pick in (("tile forwards, ours", lambda r: OURS), ("tile forwards, best peer", lambda r: r["best_peer"])):
            lines.append(f"| {label} | " + " | ".join("%.0f" % r["mean_tile_forwards"][pick(r)] for r in rows) + " |")
    notes: dict = {}
    for r in rows:
        for k, why in r["refused"].items():
            notes.setdefault((k, why), []).append(f"{r['case']} {r['factor']}M")
    lines += [""] * bool(notes) + [f"* {short(k)}: {why} ({', '.join(w)})" for (k, why), w in notes.items()]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=("unanimity", "smooth", "real"), default="real")
    ap.add_argument("--players", nargs="+", type=int, default=[16, 32, 64])
    ap.add_argument("--min-players", type=int, default=5, help="real games with fewer players are left out")
    ap.add_argument("--cases", nargs="+", default=None, help="only these recorded cases (real family)")
    ap.add_argument("--factors", nargs="+", type=int, default=[4, 10, 30])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--max-seconds", type=float, default=300.0, help="a method slower than this per run is refused")
    ap.add_argument("--slow-seeds", type=int, default=1, help="seeds per game of the slow peers (ShaplEIG)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--table", nargs="+", default=None, help="print the markdown table of these JSON results")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown([r for f in args.table for r in json.loads(Path(f).read_text())]))
        return
    cases = (real_cases(args.seeds, args.min_players) if args.family == "real"
             else synthetic_cases(args.family, args.players, args.seeds))
    cases = [c for c in cases if args.cases is None or c.label in args.cases]
    rows = []
    too_slow: dict[str, tuple[int, str]] = {}
    for case in cases:
        for f in args.factors:
            budget = f * case.m
            if budget >= 2 ** case.m:
                continue
            row = run_cell(case, budget, args.methods, args.max_seconds, args.slow_seeds, too_slow)
            row["family"], row["factor"] = args.family, f
            rows.append(row)
            print_row(row)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
