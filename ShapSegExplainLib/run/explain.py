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
from ..shapley.estimator import default_budget
from .job import ExplainJob
from .player_set import PlayerSet, build_players_for, emit_players, player_ids_ct
from .sampler import Sampler, faithfulness_of, pruning_measured
from .state import Emit, Run

if TYPE_CHECKING:       # types only: the heavy modules are imported when a run needs them
    from ..nnunet.case import Case
    from ..nnunet.evaluator import CostCounters
    from ..nnunet.model import NNUNetModel
    from ..shapley.estimator import ShapleyResult
    from ..shapley.values import ValueFunction
    from .journal import Journal

PHASES = ("load", "prepare", "roi", "players", "shapley", "faithfulness", "write")
CUT_SHORT = ("time_limit", "forward_budget")   # a result that --resume can carry on (its journal is kept)


def run_explanation(job: ExplainJob, emit: Emit | None = None, cancel: Callable[[], bool] | None = None,
                    ct_image: sitk.Image | None = None, extra_files: list[str] | None = None,
                    model: NNUNetModel | None = None) -> dict:
    """Run ``job`` and write its outputs atomically to ``job.out``; returns the content of
    ``explanation.json`` plus ``out`` and ``files``. ``ct_image`` replaces reading ``job.ct``;
    ``extra_files`` are copied next to the results (the demo's phantom CT and inputs);
    ``model``, loaded with the job's model settings, is reused instead of loaded (a study's
    worker loads each model once)."""
    from .lock import holding

    job.check()
    with holding(job.out):          # one writer per --out: a second run stops here with one line
        return _run_locked(job, Run(job, emit or (lambda e: None), cancel or (lambda: False)),
                           ct_image, extra_files, model)


def _run_locked(job: ExplainJob, run: Run, ct_image, extra_files, model) -> dict:
    from .journal import check_resumable, journal_folder
    from .outputs import OutputFolder

    folder = OutputFolder(job.out)          # refuses a bad --out before any work
    if job.resume:
        check_resumable(job)
    expl = compute(run, ct_image, model)
    run.phase("write", "writing the outputs")
    with folder as tmp:
        try:
            files = write_outputs(tmp, expl, run, extra_files or [])
        except OSError as e:        # disk full, quota, a folder gone (report.inputs.write_image: SimpleITK's too)
            kept = "; free space and run the same command with --resume" if journal_folder(job.out).is_dir() else ""
            raise ShapSegError(f"cannot write the result to {folder.out}: {e.strerror or e}{kept}", "bad_output") from e
        run.check()
        out = folder.commit()
    if expl.result.stop_reason not in CUT_SHORT:       # the result is final: nothing to resume
        shutil.rmtree(journal_folder(job.out), ignore_errors=True)
    expl.content["out"] = str(out)
    expl.content["files"] = {k: str(out / Path(v).name) for k, v in files.items()}
    return expl.content


# ----- computation ---------------------------------------------------------------------------------


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
    reference = reference_in_roi(case, job.reference, roi) if job.reference else None
    return value_function_for(model, job.value, target, full_logits, float(np.prod(case.spacing)) / 1000.0,
                              reference, job.normalized)


def value_function_for(model: NNUNetModel, name: str, target: int, unperturbed_logits, voxel_ml: float,
                       reference: np.ndarray | None = None, normalized: bool = False) -> ValueFunction:
    """A value function read through the model's own label rule and nonlinearity (nnU-Net's
    label manager: ``nnunet.evaluator``); the value functions themselves know no model."""
    from functools import partial

    from ..nnunet.evaluator import roi_labels, roi_probability
    from ..shapley.values import make_value_function
    return make_value_function(name, target, unperturbed_logits, voxel_ml, partial(roi_labels, model),
                               partial(roi_probability, model), reference, normalized)


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
