"""The game the estimator plays during a run (``Sampler``: chunks, progress, journal, stop
rule; flat or coarse to fine), and what is measured on its result afterwards: pruning's
error on re-run coalitions and the faithfulness curves."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ..shapley.estimator import is_exact
from ..shapley.settings import ShapleySettings
from .player_set import PlayerSet, emit_players, players_of

if TYPE_CHECKING:
    from .state import Run

SPLIT_NAMES = {"proportional": "proportional split, Owen", "equal": "equal split, two-step Shapley"}
GAME_CHUNK = 32       # coalitions per evaluator call: bounds memory, paces progress and cancel checks
PRUNING_CHECKS = 8     # coalitions re-run without pruning to measure its error


def pruning_measured(ev, vf, result, seed: int) -> dict:
    """The tolerance's measured effect: ``PRUNING_CHECKS`` evaluated coalitions (the emptiest
    first, they move the logits most, then at random) with the pruned tiles run for real."""
    coal = np.asarray(result.coalitions, bool)
    absent = (~coal).sum(axis=1)
    rng = np.random.default_rng(seed)
    pick = list(np.argsort(-absent, kind="stable")[:PRUNING_CHECKS // 2])
    rest = np.setdiff1d(np.arange(len(coal)), pick)
    pick += list(rng.choice(rest, size=min(len(rest), PRUNING_CHECKS - len(pick)), replace=False))
    f0 = ev.counters.tile_forwards
    pruned, exact = ev.pruning_error(coal[np.sort(pick)])
    return {"checked_coalitions": len(pick), "check_forwards": ev.counters.tile_forwards - f0,
            "measured_max_logit": float((pruned.float() - exact.float()).abs().max()),
            "measured_max_value": float(np.abs(vf(pruned) - vf(exact)).max())}


def faithfulness_of(sampler: Sampler, players: PlayerSet, phi: np.ndarray) -> dict:
    """Curves over removed volume for the final players (through the atoms when coarse to fine),
    ranked by φ per mL: the voxel map that sums to φ over each player, so merging players of
    equal density leaves the curves unchanged and partitions compare."""
    from ..shapley.hierarchy import node_game
    from ..shapley.metrics import faithfulness
    rows = players.rows
    game = sampler.game
    if players.tree is not None:
        game = node_game(sampler.game, players.tree.membership(players.nodes))
    purity = np.array([np.nan if r["purity"] is None else r["purity"] for r in rows])
    return faithfulness(game, phi, steps=sampler.run.job.faithfulness_steps, purity=purity,
                        volumes=np.array([r["ml"] for r in rows]),
                        kept=np.array([r["kind"] == "context" for r in rows]), order="density")


class Sampler:
    """The game the estimator plays (values of coalitions of the evaluator's players, in
    chunks with progress and cancel checks) and the stop rule of the job: the time limit
    from the start of sampling, the tile-forward budget, and (coarse to fine) the coalition budget."""

    def __init__(self, run: Run, ev, vf, m: int, journal) -> None:
        self.run, self.ev, self.vf, self.m = run, ev, vf, m
        self.journal = journal      # every chunk's values, durably; replayed on --resume (``run.journal``)
        journal.forwards = lambda: ev.counters.tile_forwards
        import torch
        journal.new_entries = ev.memo.drain_added
        for key, arr in journal.memo:                   # a resumed run: the memo as the killed run left it
            ev.memo.put(key, torch.from_numpy(arr))
        ev.memo.added = []          # from here on (the setup's entries a resumed run computes again)
        self.total = self.planned = 0       # coalitions planned: with the faithfulness curves, and without
        self.status = {"done": 0, "ratio": None, "phase": "shapley"}
        self.t0 = time.perf_counter()
        self.forwards0 = ev.counters.tile_forwards
        self.coalition_cap = 0      # coarse to fine: ``--budget`` caps the coalitions of all levels together
        self.flat_mode = True       # coarse to fine reports whole levels (``on_level``), not each game's batches
        self.trace: list[dict] = []  # convergence: coalitions, tile forwards since sampling began, ratio
        self.left_whole: list[dict] = []   # coarse to fine: players not refined, as their value needs others absent

    def game(self, coalitions: np.ndarray) -> np.ndarray:
        return self._play(coalitions, proxy=False)

    def proxy_game(self, coalitions: np.ndarray) -> np.ndarray:
        return self._play(coalitions, proxy=True)

    def cost(self, coalition: np.ndarray, proxy: bool = False) -> set:
        return self.ev.missing_keys(coalition, proxy)

    def estimator_options(self) -> dict:
        """The proxy and the cost-aware draws, where the job asks for them and they apply."""
        job, ev = self.run.job, self.ev
        out: dict = {}
        if ev.proxy_frozen - ev.pruned:
            out["proxy"] = self.proxy_game
        if job.cost_candidates > 1 and ev.strategy == "memo":
            out["cost"] = self.cost
        return out

    def _play(self, coalitions: np.ndarray, proxy: bool) -> np.ndarray:
        run, st = self.run, self.status
        out = []
        for i in range(0, len(coalitions), GAME_CHUNK):
            run.check()
            chunk = coalitions[i:i + GAME_CHUNK]
            evaluate = lambda c: self.vf(self.ev.evaluate(c, proxy=proxy))          # noqa: E731
            # the Shapley values' chunks are journaled; the curves come after them and are redone
            out.append(evaluate(chunk) if st["phase"] == "faithfulness" else self.journal.play(chunk, proxy, evaluate))
            st["done"] += len(chunk)
            extra = {} if st["ratio"] is None else {"ratio": st["ratio"]}
            run.emit({"event": "progress", "phase": st["phase"], "done": min(st["done"], max(self.total, st["done"])),
                      "total": max(self.total, st["done"]), "message": f"{st['done']} coalitions",
                      "tile_forwards": self.ev.counters.tile_forwards,
                      "seconds": round(time.perf_counter() - self.t0, 3), **extra})
        return np.concatenate(out) if out else np.zeros(0)

    def stop(self) -> str | None:
        """Why sampling must end now (checked every few coalitions), or None."""
        job = self.run.job
        if job.time_limit is not None and time.perf_counter() - self.t0 >= job.time_limit:
            return "time_limit"
        if job.budget_forwards is not None and self.ev.counters.tile_forwards - self.forwards0 >= job.budget_forwards:
            return "forward_budget"
        if self.coalition_cap and self.status["done"] >= self.coalition_cap:
            return "budget"
        return None

    def pace(self) -> int:
        """Coalitions that still fit before the forward budget and the time limit, each counted
        at its worst (a forward of every ROI tile; a forward at the rate of this sampling so
        far, its fits included); ``EVAL_CHUNK`` when neither is near. The estimator plays that
        many next, so a stop overshoots by about one coalition, not a chunk of 16 (bench_cost:
        a chunk of a 439-player design was up to 26 s on a slow CPU)."""
        from ..shapley.estimator import EVAL_CHUNK
        job, worst = self.run.job, max(1, self.ev.n_tiles)
        used = self.ev.counters.tile_forwards - self.forwards0
        fits = [EVAL_CHUNK]
        if job.budget_forwards is not None:
            fits.append((job.budget_forwards - used) // worst)
        if job.time_limit is not None:
            elapsed = time.perf_counter() - self.t0
            fits.append(int((job.time_limit - elapsed) * used / (elapsed * worst)) if used else 1)
        return max(1, min(fits))

    def on_batch(self, step: dict) -> None:
        self.run.check()
        self.status["ratio"] = step["ratio"]
        if self.flat_mode:
            self.record(step["n_evaluations"], step["ratio"])
            self.partial(step["values"], step["se"], step["ratio"], step["n_evaluations"], step["budget"])

    def record(self, coalitions: int, ratio: float) -> None:
        self.trace.append({"coalitions": int(coalitions), "ratio": float(ratio),
                           "tile_forwards": self.ev.counters.tile_forwards - self.forwards0})

    def partial(self, phi, se, ratio, n, budget) -> None:
        self.run.emit({"event": "partial", "phi": np.asarray(phi).tolist(), "se": np.asarray(se).tolist(),
                       "ratio": ratio, "n_evaluations": n, "budget": budget})

    def start(self, message: str, planned: int) -> None:
        steps = self.run.job.faithfulness_steps
        self.planned = planned
        self.total = planned + (3 * (steps + 1) if steps else 0)
        self.t0 = time.perf_counter()
        self.forwards0 = self.ev.counters.tile_forwards
        self.run.phase("shapley", message, 0, self.total, tile_forwards=self.ev.counters.tile_forwards)

    def flat(self, budget: int):
        from ..shapley.estimator import shapley_values
        from ..shapley.proxy import with_proxy
        job = self.run.job
        self.start(f"Shapley values of {self.m} players", 2 ** self.m if is_exact(self.m, budget) else budget)
        opts = self.estimator_options()
        s = ShapleySettings.of(job)
        given = dict(seed=job.seed, settings=s, on_batch=self.on_batch, stop=self.stop, pace=self.pace)
        if "proxy" not in opts:
            return shapley_values(self.game, self.m, budget, **given, **opts)
        proxy_cost = (lambda c: self.cost(c, True)) if "cost" in opts else None
        return with_proxy(self.game, opts.pop("proxy"), self.m, budget, s.residual_coalitions or None,
                          proxy_cost=proxy_cost, **given, **opts)

    def tree(self, players: PlayerSet, case):
        """Coarse to fine: the roots' game, then refinements; every level is emitted (players
        and φ) so the live overlay sharpens; returns the result, the final players and the levels."""
        from ..shapley.hierarchy import EXACT_ROOT_FORWARDS, AtomGames, level_budget, tree_shapley
        job, tree = self.run.job, players.tree
        self.flat_mode = False
        self.coalition_cap = job.budget or 0
        roots = tree.roots()
        enumeration = self.ev.enumeration_forwards if self.ev.strategy == "memo" else None
        exact = enumeration is not None and enumeration(tree.membership(roots)) <= EXACT_ROOT_FORWARDS
        # planned: the coarse game and the costliest allowed refinements (an upper estimate for the progress bar)
        games = sorted(level_budget(len(tree.children(n))) for n in range(tree.n_nodes) if tree.children(n))
        planned = (2 ** len(roots) if exact else level_budget(len(roots))) + \
            sum(games[len(games) - job.refinements:] if job.refinements else [])
        self.start(f"coarse game of {len(roots)} players, then refinements", min(planned, job.budget or planned))
        levels: list[dict] = []
        state = {"players": players}

        def on_level(res) -> None:
            pmap = tree.player_map(res.nodes)
            ps = players_of(case, players.plan, pmap, tree)
            ps.nodes = list(res.nodes)              # the level's players are these tree nodes
            state["players"] = ps
            refined = res.refined[-1] if res.refined else None
            levels.append({"refined": None if refined is None else tree.names[refined],
                           "scale": res.scales[-1] if res.scales else None, "players": len(res.nodes),
                           "coalitions": res.n_evaluations, "proxy_coalitions": res.proxy_evaluations,
                           "tile_forwards": self.ev.counters.tile_forwards,
                           "seconds": round(time.perf_counter() - self.t0, 3)})
            if refined is not None:
                emit_players(self.run, case, ps, self.vf)
            ratio = float(res.se.max() / max(res.values.max() - res.values.min(), 1e-300))
            self.record(res.n_evaluations, ratio)
            self.partial(res.values, res.se, ratio, res.n_evaluations, self.planned)

        opts = self.estimator_options()
        s = ShapleySettings.of(job)
        games = AtomGames(self.game, opts.pop("proxy", None), opts.pop("cost", None), s.residual_coalitions or None,
                          enumeration)
        volumes = tree.node_voxels() if job.refine_by == "volume" else None
        namable = np.array([r["kind"] != "context" for r in players.rows])
        res = tree_shapley(games, tree, seed=job.seed, max_refinements=job.refinements, namable=namable,
                           min_share=job.refine_share, volumes=volumes, split=job.split, stop=self.stop,
                           pace=self.pace, on_level=on_level, settings=s, on_batch=self.on_batch, **opts)
        self.left_whole = [{"name": tree.names[n], "phi": float(res.values[res.nodes.index(n)]), "marginal": m}
                           for n, m in res.left_whole.items()]
        return tree_result(res, tree, job.seed, job.split), state["players"], levels


def tree_result(res, tree, seed: int, split: str = "proportional"):
    """A coarse-to-fine result in the shape of a flat one: the audit keeps every game's
    coalitions as the atoms present, with their values."""
    from ..shapley.estimator import ShapleyResult
    games = res.games
    spread = float(res.values.max() - res.values.min())
    history = [dict(h, game=k) for k, g in enumerate(games) for h in g.history]
    kinds = ", ".join(dict.fromkeys(g.estimator for g in games))
    return ShapleyResult(values=res.values, se=res.se, base_value=res.base_value, full_value=res.full_value,
                         n_evaluations=res.n_evaluations, proxy_evaluations=res.proxy_evaluations,
                         ratio=float(res.se.max() / spread) if spread > 0 else 0.0,
                         exact=all(g.exact for g in games), stop_reason=res.stop_reason, seed=seed,
                         coalitions=res.atom_coalitions(tree),
                         game_values=np.concatenate([g.game_values for g in games]), history=history,
                         estimator=f"coarse to fine ({SPLIT_NAMES[split]}; {kinds})")
