"""One explanation from a job: load, preprocess, ROI, players, cached KernelSHAP,
faithfulness, and the output files, reporting progress as events.

Events are dicts handed to ``emit``; the worker prints them as JSON lines and the command
line draws a progress bar from them:

* ``{"event": "progress", "phase", "done", "total", "message", ...}``; in the ``shapley``
  phase also ``tile_forwards``, ``ratio`` and ``seconds``;
* ``{"event": "players", "players": [{id, name, kind, organ, voxels, ml, centroid_ras}], "unit",
  "preview"}`` once the players exist, so a GUI can label and draw the partial results
  (``preview``: the job's player map file, label = id + 1, or None);
* ``{"event": "partial", "phi", "se", "ratio", "n_evaluations", "budget"}`` after every batch.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..errors import ShapSegError
from ..shapley.estimator import default_budget, is_exact
from .job import ExplainJob

if TYPE_CHECKING:       # types only: the heavy modules are imported when a run needs them
    from ..nnunet.case import Case
    from ..nnunet.evaluator import CostCounters
    from ..nnunet.grid import RoiPlan
    from ..nnunet.model import NNUNetModel
    from ..players.levels import PlayerTree
    from ..players.maps import PlayerMap
    from ..shapley.estimator import ShapleyResult
    from ..shapley.values import ValueFunction
    from .journal import Journal

Emit = Callable[[dict], None]
PHASES = ("load", "prepare", "roi", "players", "shapley", "faithfulness", "write")
CUT_SHORT = ("time_limit", "forward_budget")   # a result that --resume can carry on (its journal is kept)
SPLIT_NAMES = {"proportional": "proportional split, Owen", "equal": "equal split, two-step Shapley"}
GAME_CHUNK = 32       # coalitions per evaluator call: bounds memory, paces progress and cancel checks


class Cancelled(BaseException):
    """Raised when a run is asked to stop (SIGTERM in the worker, a cancel flag here);
    a BaseException so that no library's ``except Exception`` swallows it."""


@dataclass
class Run:
    """What a run has built so far (for the outputs and for tests)."""
    job: ExplainJob
    emit: Emit
    cancel: Callable[[], bool]
    t0: float = field(default_factory=time.perf_counter)
    phase_seconds: dict = field(default_factory=dict)
    _phase: str | None = None
    _phase_t0: float = 0.0

    def phase(self, name: str, message: str, done: int = 0, total: int = 1, **extra) -> None:
        self.check()
        now = time.perf_counter()
        if self._phase is not None:
            self.phase_seconds[self._phase] = round(self.phase_seconds.get(self._phase, 0.0) + now - self._phase_t0, 3)
        self._phase, self._phase_t0 = name, now
        self.emit({"event": "progress", "phase": name, "done": done, "total": total, "message": message, **extra})

    def check(self) -> None:
        if self.cancel():
            raise Cancelled()


def run_explanation(job: ExplainJob, emit: Emit | None = None, cancel: Callable[[], bool] | None = None,
                    ct_image: sitk.Image | None = None, extra_files: list[str] | None = None,
                    model: NNUNetModel | None = None) -> dict:
    """Run ``job`` and write its outputs atomically to ``job.out``; returns the content of
    ``explanation.json`` plus ``out`` and ``files``. ``ct_image`` replaces reading ``job.ct``;
    ``extra_files`` are copied next to the results (the demo's phantom CT and inputs);
    ``model``, loaded with the job's model settings, is reused instead of loaded (a study's
    worker loads each model once)."""
    from .journal import check_resumable, journal_folder
    from .outputs import OutputFolder

    job.check()
    run = Run(job, emit or (lambda e: None), cancel or (lambda: False))
    folder = OutputFolder(job.out)          # refuses a bad --out before any work
    if job.resume:
        check_resumable(job)
    expl = compute(run, ct_image, model)
    run.phase("write", "writing the outputs")
    with folder as tmp:
        try:
            files = write_outputs(tmp, expl, run, extra_files or [])
        except OSError as e:             # disk full, quota, a folder gone: the partial folder is removed,
            shutil.rmtree(journal_folder(job.out), ignore_errors=True)      # and the journal (it takes space too)
            raise ShapSegError(f"cannot write the result to {folder.out}: {e.strerror or e}", "bad_output") from e
        run.check()
        out = folder.commit()
    if expl.result.stop_reason not in CUT_SHORT:       # the result is final: nothing to resume
        shutil.rmtree(journal_folder(job.out), ignore_errors=True)
    expl.content["out"] = str(out)
    expl.content["files"] = {k: str(out / Path(v).name) for k, v in files.items()}
    return expl.content


# ----- computation ---------------------------------------------------------------------------------
@dataclass
class PlayerSet:
    """The players of a run: the ROI plan they live in, the map, a row per player, the map's
    summary; for a coarse-to-fine run also the tree and the nodes that are the players (the
    roots until the values are known, the final players after; the evaluator plays the atoms)."""
    plan: RoiPlan
    pmap: PlayerMap
    rows: list[dict]
    summary: dict
    tree: PlayerTree | None = None
    nodes: list[int] | None = None      # coarse to fine: the tree nodes the players are


@dataclass
class Explanation:
    """What one explanation computed: everything the output files are written from.
    ``content`` is ``explanation.json``."""
    model: NNUNetModel
    case: Case
    target: int
    roi: np.ndarray
    players: PlayerSet
    value_fn: ValueFunction
    budget: int
    result: ShapleyResult
    faithfulness: dict | None
    counters: CostCounters
    setup_forwards: int               # tile forwards spent before sampling (ROI growing, anatomy)
    prediction: np.ndarray            # the target's unperturbed prediction in the support
    levels: list[dict] = field(default_factory=list)   # a coarse-to-fine run: one entry per level
    pruning: dict = field(default_factory=dict)        # tiles kept and the logit bound (``--tolerance``)
    sampling_forwards: int = 0                         # tile forwards of the Shapley values alone
    convergence: list[dict] = field(default_factory=list)   # ratio after each batch (flat) or level (tree)
    memory: dict = field(default_factory=dict)              # the host-memory limit and the memo's share of it
    journal: Journal | None = None                          # what was replayed from an interrupted run
    left_whole: list[dict] = field(default_factory=list)    # coarse to fine: players left whole, φ_p and m_p
    content: dict = field(default_factory=dict)


@dataclass
class Inputs:
    """What an explanation plays on: the model, the target label, the case, the ROI, the
    players and the unperturbed prediction."""
    model: NNUNetModel
    target: int
    case: Case
    roi: np.ndarray
    players: PlayerSet
    predictor: object


def prepare_inputs(run: Run, ct_image: sitk.Image | None = None, model: NNUNetModel | None = None) -> Inputs:
    """Load, preprocess, find the ROI and build the players (everything before the game)."""
    from ..nnunet.case import prepare_case
    from ..nnunet.evaluator import baseline_value
    from ..nnunet.model import load_model_for
    from ..nnunet.roi import UnperturbedPrediction, make_roi

    job = run.job
    run.phase("load", f"loading the model {job.model}")
    model = model or load_model_for(job)
    target = model.target_label(job.target)
    baseline_value(model, job.baseline_hu)          # a model that is not a CT model is refused here, not later
    run.phase("prepare", "reading and preprocessing the CT")
    case = prepare_case(ct_image if ct_image is not None else job.ct, model)
    run.phase("roi", "finding the region of interest")
    predictor = UnperturbedPrediction(case)
    kind = job.roi_kind()
    roi = make_roi(case, target, kind, getattr(job, kind), job.snap_mm, predictor)
    run.phase("players", f"building {job.players} players")
    players = build_players_for(run, case, roi, predictor)
    return Inputs(model, target, case, roi, players, predictor)


def compute(run: Run, ct_image: sitk.Image | None, model: NNUNetModel | None = None) -> Explanation:
    """Everything but the files: players, φ with SEs, faithfulness, per-player rows."""
    i = prepare_inputs(run, ct_image, model)
    expl = explain_players(run, i.model, i.case, i.target, i.roi, i.players, i.predictor)
    expl.content = describe(run, expl)
    return expl


def build_players_for(run: Run, case, roi: np.ndarray, predictor) -> PlayerSet:
    from ..nnunet.evaluator import plan_roi
    from ..players.maps import PlayerSettings, players_for_case, without_context

    job = run.job
    plan = plan_roi(case.model, case, roi)
    settings = PlayerSettings.of(job)
    if uses_levels(job):
        from ..players.levels import build_tree
        from ..players.maps import anatomy_for_case, support_mask
        anatomy = anatomy_for_case(case, plan, settings, job.anatomy, job.anatomy_labels, predictor)
        tree = build_tree(plan, case.spacing, anatomy, support_mask(plan, case.spacing, settings.margin_mm),
                          settings, job.levels, context=job.context_player)
        roots = players_of(case, plan, tree.player_map(tree.roots()), tree)
        roots.nodes = tree.roots()
        return roots
    pmap = players_for_case(case, plan, settings, job.anatomy, job.anatomy_labels, predictor)
    if not job.context_player:
        pmap = without_context(pmap)
    return players_of(case, plan, pmap)


def uses_levels(job: ExplainJob) -> bool:
    """Coarse-to-fine for the abstractions that nest (hybrid, fcc) when more than one level is asked."""
    from ..players.levels import LEVEL_KINDS
    return job.levels > 1 and job.players in LEVEL_KINDS


def players_of(case, plan, pmap, tree=None) -> PlayerSet:
    """Rows and summary of a player map."""
    from ..players.stats import map_summary, player_table
    rows = player_table(pmap, plan, case.spacing, case.network_to_ras)
    return PlayerSet(plan, pmap, rows, map_summary(pmap, plan, case.spacing, rows), tree)


def player_ids_ct(case, plan, pmap) -> np.ndarray:
    """Player id + 1 per CT voxel (0 outside the crop), through nnU-Net's export path."""
    return case.labels_to_ct(plan.crop_to_image((pmap.ids + 1).astype(np.int32), 0))


def write_preview(path: str, case, plan, pmap) -> str:
    """The player map (label = id + 1) in the CT's geometry, written atomically before the
    sampling starts, so that a GUI can colour the players while φ is still converging."""
    ids_ct = player_ids_ct(case, plan, pmap)
    image = sitk.GetImageFromArray(ids_ct.astype(np.uint16 if pmap.n_players >= 255 else np.uint8))
    image.CopyInformation(case.ct)
    path = Path(path)
    tmp = path.with_name(f".partial-{path.name}")   # same extension, so SimpleITK picks the format
    try:
        sitk.WriteImage(image, str(tmp), True)
        tmp.replace(path)
    except (OSError, RuntimeError) as e:
        raise ShapSegError(f"cannot write the player preview {path}: {e}", "bad_output") from None
    return str(path)


def reference_in_roi(case, path: str, roi: np.ndarray) -> np.ndarray:
    """A user's reference mask (CT geometry, non-zero = the structure) on the ROI's voxels."""
    from ..nnunet.case import check_same_geometry
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ShapSegError(f"cannot read the reference mask {path}: {str(e).strip().splitlines()[-1]}",
                           "bad_reference") from None
    check_same_geometry(case.ct, image, f"the reference mask {path}", "bad_reference")
    arr = (sitk.GetArrayFromImage(image) != 0).astype(np.int16)
    return (case.labels_to_network(arr, nearest=True) > 0)[roi]


def explain_players(run: Run, model, case, target: int, roi: np.ndarray, players: PlayerSet,
                    predictor) -> Explanation:
    """Shapley values of the job's value function over the players (flat, or coarse to fine
    over the tree), then faithfulness."""
    from ..nnunet.evaluator import CoalitionEvaluator
    from ..nnunet.memory import memory_limit
    from .journal import Journal

    job = run.job
    plan, pmap = players.plan, players.pmap
    tree = players.tree
    m = tree.atoms.n_players if tree is not None else pmap.n_players
    ids = tree.atoms.ids if tree is not None else pmap.ids
    memory = memory_limit(job.max_memory_gb)
    # the unperturbed prediction in the support first: its tiles hold the ROI's, which the evaluator then reuses
    prediction = predictor.labels(plan.crop_to_image(pmap.support, False)) == target
    ev = CoalitionEvaluator(model, case, plan, ids, m, strategy=job.strategy, baseline_hu=job.baseline_hu,
                            tolerance=job.tolerance, proxy_tolerance=job.proxy_tolerance,
                            memory_budget_bytes=memory.memo_bytes, unperturbed=predictor.outputs)
    vf = value_function_of(job, model, case, target, roi, ev.evaluate(np.ones((1, m), bool)))
    emit_players(run, case, players, vf)
    sampler = Sampler(run, ev, vf, m, Journal.start(job, job.resume))
    if tree is None:
        budget = job.budget or default_budget(m)
        result = sampler.flat(budget)
        levels: list[dict] = []
    else:
        result, players, levels = sampler.tree(players, case)
        budget = sampler.planned
    faith = None
    sampled = ev.counters.tile_forwards - sampler.forwards0
    if ev.pruned:
        ev.pruning.update(pruning_measured(ev, vf, result, job.seed))
    if job.faithfulness_steps:
        sampler.status["phase"] = "faithfulness"
        run.phase("faithfulness", "MoRF / LeRF / insertion curves", sampler.status["done"], sampler.total)
        faith = faithfulness_of(sampler, players, result.values)
    return Explanation(model=model, case=case, target=target, roi=roi, players=players, value_fn=vf, budget=budget,
                       result=result, faithfulness=faith, counters=ev.counters,
                       setup_forwards=predictor.counters.tile_forwards, prediction=prediction, levels=levels,
                       pruning=ev.pruning, sampling_forwards=sampled, convergence=sampler.trace,
                       memory=memory.as_dict(), journal=sampler.journal, left_whole=sampler.left_whole)


def value_function_of(job: ExplainJob, model, case, target: int, roi: np.ndarray, full_logits):
    """The job's value function (with its reference mask, if any), given the unperturbed ROI logits."""
    from ..shapley.values import value_function_for
    reference = reference_in_roi(case, job.reference, roi) if job.reference else None
    return value_function_for(model, job.value, target, full_logits, float(np.prod(case.spacing)) / 1000.0,
                              reference, job.normalized)


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


def emit_players(run: Run, case, players: PlayerSet, vf) -> None:
    """The ``players`` event (and the preview map the live overlay colours)."""
    job = run.job
    preview = write_preview(job.preview, case, players.plan, players.pmap) if job.preview else None
    run.emit({"event": "players", "unit": vf.unit, "value": job.value, "normalized": job.normalized,
              "preview": preview,
              "players": [{k: r[k] for k in ("id", "name", "kind", "organ", "voxels", "ml", "centroid_ras")}
                          for r in players.rows]})


def faithfulness_of(sampler: "Sampler", players: PlayerSet, phi: np.ndarray) -> dict:
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
            out.update(cost=self.cost, candidates=job.cost_candidates)
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
        settings = dict(seed=job.seed, batch_size=job.coalition_batch, threshold=job.threshold,
                        on_batch=self.on_batch, estimator=job.estimator, stop=self.stop)
        if "proxy" not in opts:
            return shapley_values(self.game, self.m, budget, **settings, **opts)
        proxy_cost = (lambda c: self.cost(c, True)) if "cost" in opts else None
        return with_proxy(self.game, opts.pop("proxy"), self.m, budget, proxy_cost=proxy_cost, **settings, **opts)

    def tree(self, players: PlayerSet, case):
        """Coarse to fine: the roots' game, then refinements; every level is emitted (players
        and φ) so the live overlay sharpens; returns the result, the final players and the levels."""
        from ..shapley.hierarchy import AtomGames, level_budget, tree_shapley
        job, tree = self.run.job, players.tree
        self.flat_mode = False
        self.coalition_cap = job.budget or 0
        roots = tree.roots()
        # planned: the coarse game and the costliest allowed refinements (an upper estimate for the progress bar)
        games = sorted(level_budget(len(tree.children(n))) for n in range(tree.n_nodes) if tree.children(n))
        planned = level_budget(len(roots)) + sum(games[len(games) - job.refinements:] if job.refinements else [])
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
        games = AtomGames(self.game, opts.pop("proxy", None), opts.pop("cost", None))
        volumes = tree.node_voxels() if job.refine_by == "volume" else None
        res = tree_shapley(games, tree, seed=job.seed, max_refinements=job.refinements,
                           min_share=job.refine_share, volumes=volumes, split=job.split, stop=self.stop,
                           on_level=on_level, threshold=job.threshold, estimator=job.estimator,
                           batch_size=job.coalition_batch, on_batch=self.on_batch, **opts)
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


def describe(run: Run, expl: Explanation) -> dict:
    """The content of ``explanation.json`` (contract fields first)."""
    job, rows, result, vf = run.job, expl.players.rows, expl.result, expl.value_fn
    model, case, roi = expl.model, expl.case, expl.roi
    order = np.argsort(-result.values, kind="stable")
    rank = np.empty(len(order), int)
    rank[order] = np.arange(1, len(order) + 1)
    for r, phi, se, rk in zip(rows, result.values, result.se, rank):
        r.update(phi=float(phi), se=float(se), ci95_low=float(phi - 1.96 * se), ci95_high=float(phi + 1.96 * se),
                 rank=int(rk))
    if expl.players.tree is not None:        # the first level's player of each final one (the report's coarse view)
        tree = expl.players.tree
        for r, node in zip(rows, expl.players.nodes):
            r.update(coarse=tree.names[tree.root(node)], level=int(tree.level[node]))
    counters = expl.counters.as_dict()
    unit_ml = float(np.prod(case.spacing)) / 1000.0
    stats = {
        "coalitions": counters["coalitions"], "tile_forwards": counters["tile_forwards"],
        "tile_forwards_roi": counters["tile_forwards_roi"], "cache_hits": counters["cache_hits"],
        "seconds": round(time.perf_counter() - run.t0, 3),
        "tile_forwards_setup": expl.setup_forwards,
        "tile_forwards_sampling": expl.sampling_forwards,
        "tile_forwards_whole_image": counters["tile_forwards_whole_image"],
        "network_passes": counters["network_passes"], "memo_hits": counters["memo_hits"],
        "unperturbed_reuses": counters["unperturbed_reuses"], "peak_cache_bytes": counters["peak_cache_bytes"],
        "cache_evictions": counters["evictions"],
        "coalitions_resumed": expl.journal.replayed if expl.journal else 0,
        "tile_forwards_resumed": expl.journal.replayed_forwards if expl.journal else 0,
        "seconds_by_phase": dict(run.phase_seconds), "seconds_by_part": counters["seconds"],
    }
    return {
        "tool": "ShapSegExplain", "version": __version__,
        "target": {"label": int(expl.target), "name": model.label_name(expl.target)},
        "value": {"name": vf.name, "normalized": vf.normalized, "unit": vf.unit,
                  "normaliser": vf.scale if vf.normalized else None},
        "base_value": result.base_value, "full_value": result.full_value,
        "additivity_error": result.additivity_error,
        "players": rows,
        "shapley": {"exact": result.exact, "estimator": result.estimator, "n_evaluations": result.n_evaluations,
                    "proxy_evaluations": result.proxy_evaluations,
                    "stop_reason": result.stop_reason, "left_whole": expl.left_whole,
                    "convergence_ratio": result.ratio, "seed": result.seed, "budget": expl.budget,
                    "audit_players": int(np.shape(result.coalitions)[1]),
                    "history": result.history},
        "faithfulness": expl.faithfulness,
        "levels": expl.levels,
        "convergence": expl.convergence,
        "pruning": expl.pruning,
        "roi": {"voxels": int(roi.sum()), "ml": round(int(roi.sum()) * unit_ml, 4),
                "tiles": list(expl.players.plan.tiles), "kind": job.roi_kind()},
        "players_summary": expl.players.summary,
        "model": {"folder": str(model.model_dir), "folds": [str(f) for f in model.folds],
                  "mirror_axes": list(model.mirror_axes or ()), "device": str(model.device),
                  "network_spacing_mm": list(case.spacing), "patch_size": list(model.patch_size),
                  "batch_size": model.batch_size,
                  "batch_from_memory": model.batch_choice.as_dict() if model.batch_choice else None,
                  "batch_halvings": list(model.batch_halvings),
                  "memory": expl.memory},
        "settings": job.to_dict(),
        "stats": stats,
    }


# ----- outputs -------------------------------------------------------------------------------------
def write_outputs(folder: Path, expl: Explanation, run: Run, extra_files: list[str]) -> dict[str, str]:
    """Every output file into ``folder``; ``report.png`` last, drawn from the other files
    exactly as ``shapseg report`` re-draws it."""
    from ..report.figure import write_report
    from ..report.inputs import CT_VIEW, write_ct_view
    from . import outputs as o

    case, content, result = expl.case, expl.content, expl.result
    plan, pmap, rows = expl.players.plan, expl.players.pmap, expl.players.rows
    ct = case.ct
    ids_ct = player_ids_ct(case, plan, pmap)
    roi_ct = case.labels_to_ct(expl.roi.astype(np.int32))
    pred_ct = case.labels_to_ct(expl.prediction.astype(np.int32))
    files = {"players": "players.seg.nrrd", "attribution": "attribution.nrrd", "roi": "roi.seg.nrrd",
             "table": "attributions.csv", "report": "report.png", "audit": "coalitions.npz",
             "ct_view": CT_VIEW, "explanation": "explanation.json"}
    o.write_players_seg(folder / files["players"], ct, ids_ct, rows)
    run.check()
    o.write_attribution(folder / files["attribution"], ct, ids_ct, result.values)
    o.write_roi_seg(folder / files["roi"], ct, roi_ct, pred_ct, content["target"]["name"])
    context = next((r["id"] + 1 for r in rows if r["kind"] == "context"), None)
    write_ct_view(folder / files["ct_view"], ct, ids_ct, roi_ct, context)
    o.write_csv(folder / files["table"], rows)
    o.write_audit(folder / files["audit"], result.coalitions, result.game_values, result.seed)
    run.check()
    for f in extra_files:
        shutil.copy2(f, folder / Path(f).name)
        files[Path(f).name.split(".")[0]] = Path(f).name
    content["stats"]["seconds"] = round(time.perf_counter() - run.t0, 3)
    content["stats"]["seconds_by_phase"] = dict(run.phase_seconds)
    content["files"] = dict(files)
    o.write_json(folder / files["explanation"], content)
    write_report(folder)
    return files


def top_drivers(expl: dict, k: int = 5) -> list[dict]:
    """The ``k`` players with the largest |φ|."""
    return sorted(expl["players"], key=lambda r: -abs(r["phi"]))[:k]
