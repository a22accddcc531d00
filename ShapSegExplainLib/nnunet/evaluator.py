"""The coalition evaluator: fused ROI logits for batches of coalitions, with tile caching.

A coalition says which players are present. An absent player's voxels carry the
baseline in the network's input space. A tile's output depends only on its own input
window, so only the tiles that intersect the ROI are run, and

* ``roi``   re-runs every ROI tile for every coalition (the plain path);
* ``paper`` reuses the unperturbed output for a tile with no absent player in it;
* ``memo``  keys a tile's output by the set of absent players *inside that tile* whose absence
  changes its input, so every coalition that agrees there reuses it (LRU on bytes; only the
  ROI part is kept). A player whose voxels in the tile already hold the baseline's input value
  is not in the key: air under a CT model that clips at its foreground's 0.5th percentile
  (−171 HU for abdo7-small) is the baseline's −1024 HU once normalised, so removing it leaves
  the input bit for bit as it was (bench_cost, spleen: the air outside the body).

All three feed the same per-tile values to the same fp16 fusion replay, so they give the
same result bit for bit; only the number of network calls differs.

``tolerance`` > 0 prunes tiles: a ROI tile whose Gaussian share of the fused logits,
w_t(x) = g_t(x) / Σ_s g_s(x), stays at or below the tolerance on every ROI voxel is frozen
at its unperturbed output. The fused logit at x then moves by
|Δ(x)| = |Σ_{t pruned} w_t(x) (y_t^S(x) − y_t^N(x))| ≤ Σ_{t pruned} w_t(x) · D_t, with D_t the
largest change of tile t's ROI logits; ``pruning`` reports that bound with D_t measured
between every player present and every player absent (setup forwards: every player absent,
and every player present unless the setup's prediction already ran the tile; the latter is
the frozen output). That D_t assumes no coalition moves a frozen tile more than
blanking every player does; the run also measures the real error on re-run coalitions.

``proxy_tolerance`` defines a second, cheaper game on the same memo: ``evaluate(…, proxy=True)``
also freezes the tiles whose share stays at or below it. The estimator corrects the proxy
with exact evaluations (``shapley.proxy``), so no bound is needed; an exact evaluation of a
coalition the proxy saw re-runs only the frozen tiles. ``missing_keys`` tells the estimator
which tile outputs a coalition would need that the memo does not hold (cost-aware sampling).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from ..choices import BASELINES, STRATEGIES
from ..errors import ShapSegError
from .cache import ByteLRU
from .case import Case
from .grid import RoiPlan
from .memory import release_freed_memory
from .model import NNUNetModel
from .tiles import Fusion, make_grid, pad_data


@dataclass
class CostCounters:
    """What a run cost, and what it would have cost without the cache."""
    coalitions: int = 0
    tile_forwards: int = 0
    network_passes: int = 0
    tile_forwards_roi: int = 0
    tile_forwards_whole_image: int = 0
    memo_hits: int = 0
    unperturbed_reuses: int = 0
    distinct_states: int = 0
    cache_entries: int = 0
    peak_cache_bytes: int = 0
    evictions: int = 0
    seconds: dict = field(default_factory=lambda: defaultdict(float))

    def as_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "seconds"}
        d["seconds"] = {k: round(v, 4) for k, v in self.seconds.items()}
        d["cache_hits"] = self.memo_hits + self.unperturbed_reuses
        return d


def plan_roi(model: NNUNetModel, case: Case, roi_net: np.ndarray) -> RoiPlan:
    """Tiles and crop for an ROI given on the network grid (shape of ``case.data[0]``)."""
    roi_net = np.asarray(roi_net, bool)
    if roi_net.shape != case.shape:
        raise ShapSegError(f"ROI shape {roi_net.shape} differs from the network grid {case.shape}", "bad_roi")
    if not roi_net.any():
        raise ShapSegError("the ROI is empty on the network grid", "empty_roi")
    grid = make_grid(model, case.shape)
    roi_padded = grid.pad(roi_net, False)
    tiles = grid.tiles_touching(roi_padded)
    return RoiPlan(grid=grid, roi_padded=roi_padded, tiles=tuple(tiles), crop=grid.union_box(tiles))


def baseline_value(model: NNUNetModel, hu: float) -> np.ndarray:
    """An HU value mapped through the model's own normalisation, per input channel."""
    from pathlib import Path

    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    cm, pm = model.configuration_manager, model.plans_manager
    out = []
    for c, scheme in enumerate(cm.normalization_schemes):
        if scheme not in ("CTNormalization", "NoNormalization"):
            raise ShapSegError(f"the model in {model.model_dir} normalises with {scheme}, not CTNormalization: "
                               "an absent player's value in HU has no meaning for it (ShapSegExplain explains CT "
                               "models)", "unsupported_model")
        cls = recursive_find_python_class(str(Path(nnunetv2.__path__[0]) / "preprocessing" / "normalization"),
                                          scheme, "nnunetv2.preprocessing.normalization")
        norm = cls(use_mask_for_norm=cm.use_mask_for_norm[c],
                   intensityproperties=pm.foreground_intensity_properties_per_channel[str(c)])
        out.append(float(norm.run(np.array([hu], dtype=np.float32))[0]))
    return np.array(out, dtype=np.float32)


class TileRunner:
    """Runs batches of tile inputs through the model, nnU-Net's way.

    ``batch_size == 1`` is nnU-Net's own call pattern (one tile per network call), so
    outputs are bitwise those of ``nnUNetPredictor``. Larger batches are faster; a lone
    tile is then sent twice so every call has at least two samples: PyTorch's CPU
    convolution picks a different kernel for a batch of one, and with two or more the
    output of a tile does not depend on what else is in the batch (tested)."""

    def __init__(self, model: NNUNetModel, batch_size: int) -> None:
        self.model, self.batch_size = model, int(batch_size)

    def run(self, inputs: list[torch.Tensor], counters: CostCounters, on_output) -> None:
        """Forward ``inputs`` (each (c, *patch)) in batches; ``on_output(i, weighted (F, C, *patch))``.
        A CUDA out-of-memory error halves the batch and retries (``_halve``)."""
        start = 0
        while start < len(inputs):
            bs = self.batch_size = min(self.batch_size, self.model.oom_cap or self.batch_size)
            chunk = inputs[start:start + bs]
            batch = torch.stack(chunk if (bs == 1 or len(chunk) > 1) else chunk * 2)
            t0 = time.perf_counter()
            try:
                out = self.model.forward_weighted(batch)
            except torch.cuda.OutOfMemoryError:
                del batch
                self._halve(bs)
                continue
            counters.seconds["forward"] += time.perf_counter() - t0
            counters.tile_forwards += len(chunk)
            counters.network_passes += len(chunk) * self.model.passes_per_tile
            for j in range(len(chunk)):
                on_output(start + j, out[:, j])
            start += len(chunk)

    def _halve(self, bs: int) -> None:
        """Half the batch for this runner and every later one of the model, down to two tiles:
        the outputs stay bitwise the same (a tile's output does not depend on its batch). Not
        to one: those are nnU-Net's batch-of-one outputs, so the game would change mid-run."""
        if bs <= 2:
            raise ShapSegError(f"the GPU ran out of memory with {bs} tile{'s' * (bs > 1)} per network call; "
                               "free GPU memory, or use --batch-size 1 or --device cpu", "out_of_memory")
        torch.cuda.empty_cache()
        self.batch_size = self.model.oom_cap = bs // 2
        self.model.batch_halvings.append(self.batch_size)
        logging.getLogger("shapseg").warning("CUDA out of memory at %d tiles per call; going on with %d",
                                             bs, self.batch_size)


class CoalitionEvaluator:
    """Fused ROI logits for coalitions of players over the crop."""

    def __init__(self, model: NNUNetModel, case: Case, plan: RoiPlan, player_map: np.ndarray,
                 n_players: int | None = None, strategy: str = "memo", baseline: str = "constant",
                 baseline_hu: float = -1024.0, blur_sigma_mm: float = 6.0,
                 memory_budget_bytes: int = 2 << 30, batch_size: int | None = None, tolerance: float = 0.0,
                 proxy_tolerance: float = 0.0, unperturbed: dict[int, torch.Tensor] | None = None) -> None:
        if strategy not in STRATEGIES:
            raise ShapSegError(f"unknown strategy '{strategy}' (use {', '.join(STRATEGIES)})", "bad_option")
        if baseline not in BASELINES:
            raise ShapSegError(f"unknown baseline '{baseline}' (use {', '.join(BASELINES)})", "bad_option")
        player_map = np.asarray(player_map)
        if player_map.shape != plan.crop_shape:
            raise ShapSegError(f"player map shape {player_map.shape} differs from the crop {plan.crop_shape}",
                               "bad_players")
        self.model, self.case, self.plan, self.strategy = model, case, plan, strategy
        self.n_players = int(n_players if n_players is not None else player_map.max() + 1)
        if player_map.min() < -1 or player_map.max() >= self.n_players:
            raise ShapSegError("player ids must be -1 (fixed context) or 0..n_players-1", "bad_players")
        if (player_map[~plan.image_in_crop] >= 0).any():
            raise ShapSegError("players cannot include nnU-Net's padding outside the image", "bad_players")
        self.counters = CostCounters()
        t0 = time.perf_counter()
        self.runner = TileRunner(model, batch_size or model.batch_size)
        self.memo = ByteLRU(memory_budget_bytes)
        self.fusion = Fusion(plan.grid, plan.roi_padded, list(plan.tiles), model.gaussian(), len(model.networks))
        padded = pad_data(model, case.data)
        crop_data = padded[(slice(None), *plan.crop)].clone()
        base = self._baseline_crop(crop_data, player_map, baseline, baseline_hu, blur_sigma_mm)
        self._tile_setup(crop_data, base, player_map)
        if strategy == "memo" and unperturbed:
            self._reuse_unperturbed(unperturbed)
        self._unperturbed: dict[int, torch.Tensor] = {}
        self._seen: set[tuple[int, bytes]] = set()
        self.pruned = self._prunable(float(tolerance))
        self.proxy_frozen = self._prunable(max(float(proxy_tolerance), float(tolerance))) if proxy_tolerance > 0 else set()
        self.pruning: dict = {"tolerance": float(tolerance), "tiles": self.n_tiles, "tiles_kept": self.n_tiles - len(self.pruned)}
        self.counters.seconds["setup"] += time.perf_counter() - t0
        if self.pruned:
            self.pruning.update(self._pruning_bound())

    # ----- setup -------------------------------------------------------------------------
    def _baseline_crop(self, crop: torch.Tensor, pmap: np.ndarray, kind: str, hu: float,
                       sigma_mm: float) -> torch.Tensor:
        if kind == "constant":
            values = torch.from_numpy(baseline_value(self.model, hu))
            return values.view(-1, 1, 1, 1).expand_as(crop).clone()
        if kind == "blur":
            from scipy.ndimage import gaussian_filter
            sigma = [sigma_mm / s for s in self.case.spacing]
            return torch.from_numpy(np.stack([gaussian_filter(c.numpy(), sigma, mode="nearest") for c in crop]))
        out = crop.clone()
        flat_ids = pmap.reshape(-1)
        for c in range(crop.shape[0]):
            vals = crop[c].numpy().reshape(-1).astype(np.float64)
            keep = flat_ids >= 0
            sums = np.bincount(flat_ids[keep], weights=vals[keep], minlength=self.n_players)
            counts = np.maximum(np.bincount(flat_ids[keep], minlength=self.n_players), 1)
            means = (sums / counts).astype(np.float32)
            ch = out[c].view(-1)
            ch[torch.from_numpy(keep)] = torch.from_numpy(means[flat_ids[keep]])
        return out

    def _tile_setup(self, crop: torch.Tensor, base: torch.Tensor, pmap: np.ndarray) -> None:
        off = [s.start for s in self.plan.crop]
        self.tile_inputs, self.tile_baselines, self.tile_labels, self.tile_players = [], [], [], []
        for t in self.plan.tiles:
            w = self.plan.grid.windows[t]
            local = tuple(slice(s.start - o, s.stop - o) for s, o in zip(w, off))
            labels = pmap[local]
            self.tile_inputs.append(crop[(slice(None), *local)].contiguous())
            self.tile_baselines.append(base[(slice(None), *local)].contiguous())
            self.tile_labels.append(torch.from_numpy(labels.astype(np.int64) + 1))
            counted = labels >= 0
            if self.strategy == "memo":         # only voxels whose input the baseline changes
                counted &= (self.tile_inputs[-1] != self.tile_baselines[-1]).any(dim=0).numpy()
            self.tile_players.append(np.unique(labels[counted]))

    def _reuse_unperturbed(self, outputs: dict[int, torch.Tensor]) -> None:
        """Weighted whole-tile outputs of the unperturbed image by grid tile (the setup's
        ``roi.UnperturbedPrediction``: the same runner and batch rule, so bit for bit what this
        evaluator would compute) as memo entries, so v(N) runs only the ROI tiles the setup did not."""
        for pos, tile in enumerate(self.plan.tiles):
            if tile in outputs:
                self.memo.put(self._present_key(pos), self.fusion.roi_part(outputs[tile], pos).clone())

    def _present_key(self, pos: int) -> tuple[int, bytes]:
        """The memo key of tile ``pos`` with every player present (its unperturbed output)."""
        return pos, np.packbits(np.zeros(len(self.tile_players[pos]), bool)).tobytes()

    def shares(self) -> list[torch.Tensor]:
        """Per ROI tile, its Gaussian share w_t(x) of the fused logits on its ROI voxels."""
        g = self.model.gaussian().detach().to("cpu").reshape(-1).float()
        n = self.fusion.n_predictions.float()
        return [g[loc] / n[sel] for sel, loc in zip(self.fusion.sel, self.fusion.local)]

    def _prunable(self, tolerance: float) -> set[int]:
        if tolerance <= 0:
            return set()
        return {pos for pos, w in enumerate(self.shares()) if w.numel() and float(w.max()) <= tolerance}

    def _pruning_bound(self) -> dict:
        """max_x Σ_{t pruned} w_t(x)·D_t, D_t = max |ROI logits of tile t with every player
        absent − with every player present| (a forward per pruned tile with every player absent,
        and one with every player present unless the setup's prediction seeded it; counted as setup)."""
        pruned = sorted(self.pruned)
        present = {pos: self.memo.get(self._present_key(pos)) for pos in pruned}
        missing = [pos for pos in pruned if present[pos] is None]
        jobs = [(pos, np.ones(len(self.tile_players[pos]), bool)) for pos in pruned]
        jobs += [(pos, np.zeros(len(self.tile_players[pos]), bool)) for pos in missing]
        out = self._run_jobs(jobs)
        present.update(zip(missing, out[len(pruned):]))
        shares = self.shares()
        g = self.model.gaussian().detach().to("cpu").reshape(-1).float()
        total = torch.zeros(self.fusion.n_voxels)
        change = {}
        for i, pos in enumerate(pruned):
            # outputs are Gaussian-weighted: divide by g to get the logits' own change
            diff = (out[i].float() - present[pos].float()).abs() / g[self.fusion.local[pos]]
            d = float(diff.max())
            change[pos] = d
            total[self.fusion.sel[pos]] += shares[pos] * d
            self._unperturbed.setdefault(pos, present[pos])
            self.memo.put(self._present_key(pos), present[pos])
        return {"tiles_pruned": [self.plan.tiles[p] for p in pruned],
                "max_share_pruned": max(float(shares[p].max()) for p in pruned),
                "tile_change": {str(self.plan.tiles[p]): round(change[p], 4) for p in pruned},
                "bound_logit": float(total.max())}

    def pruning_error(self, coalitions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused logits of ``coalitions`` with the pruned tiles frozen and run for real:
        (pruned, exact), to measure what the tolerance changed (the extra forwards count)."""
        pruned = self.evaluate(coalitions)
        keep, self.pruned = self.pruned, set()
        try:
            exact = self.evaluate(coalitions)
        finally:
            self.pruned = keep
        return pruned, exact

    # ----- facts -------------------------------------------------------------------------
    @property
    def n_tiles(self) -> int:
        return len(self.plan.tiles)

    def players_per_tile(self) -> list[int]:
        return [int(p.size) for p in self.tile_players]

    def enumeration_forwards(self, membership: np.ndarray) -> int:
        """Tile forwards that every coalition of the groups ``membership`` (groups × players)
        costs through the memo, before any is played: per unfrozen ROI tile, one run per
        non-empty set of the groups it holds (``memo`` strategy)."""
        groups = np.asarray(membership, bool)
        return int(sum(2 ** int(groups[:, ids].any(axis=1).sum()) - 1
                       for pos, ids in enumerate(self.tile_players) if pos not in self.pruned))

    # ----- evaluation --------------------------------------------------------------------
    def perturbed_input(self, pos: int, absent_ids: np.ndarray) -> torch.Tensor:
        """The input of ROI tile ``pos`` with the players ``absent_ids`` set to the baseline."""
        lut = torch.zeros(self.n_players + 1, dtype=torch.bool)
        lut[torch.from_numpy(np.asarray(absent_ids, dtype=np.int64) + 1)] = True
        mask = lut[self.tile_labels[pos]]
        return torch.where(mask, self.tile_baselines[pos], self.tile_inputs[pos])

    def frozen(self, proxy: bool = False) -> set[int]:
        """Tiles held at their unperturbed output: the pruned ones, and the proxy's with ``proxy``."""
        return self.pruned | self.proxy_frozen if proxy else self.pruned

    def missing_keys(self, coalition: np.ndarray, proxy: bool = False) -> set[tuple[int, bytes]]:
        """The (tile, absent-set) outputs ``coalition`` needs that the memo does not hold:
        what evaluating it would cost (``memo`` strategy; the others re-run every tile)."""
        absent = ~np.asarray(coalition, bool)[None]
        frozen = self.frozen(proxy)
        keys = ((pos, np.packbits(self._local_absent(pos, absent, pos in frozen), axis=1)[0].tobytes())
                for pos in range(self.n_tiles))
        return {key for key in keys if key not in self.memo}

    def evaluate(self, coalitions: np.ndarray, proxy: bool = False) -> torch.Tensor:
        """Fused ROI logits (k, C, n_roi) fp16 for a (k, n_players) bool array of coalitions
        (``proxy``: with the proxy's tiles frozen too)."""
        coalitions = np.asarray(coalitions)
        if coalitions.ndim != 2 or coalitions.shape[1] != self.n_players or coalitions.dtype != bool:
            raise ValueError(f"coalitions must be a bool array (k, {self.n_players}), got "
                             f"{coalitions.dtype} {coalitions.shape}")
        k = coalitions.shape[0]
        c = self.counters
        c.coalitions += k
        c.tile_forwards_roi += k * self.n_tiles
        c.tile_forwards_whole_image += k * len(self.plan.grid)
        absent = ~coalitions
        t0 = time.perf_counter()
        frozen = self.frozen(proxy)
        per_tile = [self._tile_requests(pos, absent, pos in frozen) for pos in range(self.n_tiles)]
        c.seconds["keys"] += time.perf_counter() - t0
        parts = self._resolve(per_tile, k)
        t0 = time.perf_counter()
        out = self.fusion.fuse(parts)
        c.seconds["fusion"] += time.perf_counter() - t0
        c.distinct_states = len(self._seen)
        c.cache_entries, c.peak_cache_bytes, c.evictions = len(self.memo), self.memo.peak_bytes, self.memo.evictions
        release_freed_memory()        # the batch's freed activations back to the system
        return out

    def _tile_requests(self, pos: int, absent: np.ndarray, frozen: bool) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """Unique local absent-sets of one tile in a batch: (unique masks, inverse, keys)."""
        local = self._local_absent(pos, absent, frozen)
        packed = np.packbits(local, axis=1) if local.shape[1] else np.zeros((local.shape[0], 0), np.uint8)
        uniq, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
        keys = [row.tobytes() for row in uniq]
        for key in keys:
            self._seen.add((pos, key))
        return local[first], inverse.reshape(-1), keys

    def _local_absent(self, pos: int, absent: np.ndarray, frozen: bool) -> np.ndarray:
        """(k, players in tile) absent flags: the tile's memo key; none for a frozen tile
        (held at its unperturbed output)."""
        local = absent[:, self.tile_players[pos]]
        return np.zeros_like(local) if frozen else local

    def _resolve(self, per_tile, k: int) -> list[torch.Tensor]:
        """Per-tile ROI parts (k, F, C, n_t), computing what the strategy requires."""
        jobs: list[tuple[int, np.ndarray]] = []
        self._pending: dict[int, int] = {}
        slots: list[list] = []          # per tile: a value or a job index for each unique state / coalition
        for pos, (masks, inverse, keys) in enumerate(per_tile):
            if self.strategy == "memo":
                slots.append([self._memo_slot(pos, key, mask, jobs) for key, mask in zip(keys, masks)])
            else:
                slots.append([self._plain_slot(pos, masks[inverse[i]], jobs) for i in range(k)])
        results = self._run_jobs(jobs)
        t0 = time.perf_counter()
        parts = []
        for pos, (masks, inverse, keys) in enumerate(per_tile):
            values = [results[s] if isinstance(s, int) else s for s in slots[pos]]
            if self.strategy == "memo":
                for key, v, s in zip(keys, values, slots[pos]):
                    if isinstance(s, int):
                        self.memo.put((pos, key), v)
                parts.append(torch.stack(values)[torch.from_numpy(inverse)])
            else:
                parts.append(torch.stack(values))
        self.counters.seconds["gather"] += time.perf_counter() - t0
        return parts

    def _memo_slot(self, pos: int, key: bytes, mask: np.ndarray, jobs: list):
        hit = self.memo.get((pos, key))
        if hit is not None:
            self.counters.memo_hits += 1
            return hit
        jobs.append((pos, mask))
        return len(jobs) - 1

    def _plain_slot(self, pos: int, mask: np.ndarray, jobs: list):
        if self.strategy == "paper" and not mask.any():
            if pos in self._unperturbed:
                self.counters.unperturbed_reuses += 1
                return self._unperturbed[pos]
            if pos in self._pending:
                self.counters.unperturbed_reuses += 1
                return self._pending[pos]
            jobs.append((pos, mask))
            self._pending[pos] = len(jobs) - 1
            return len(jobs) - 1
        jobs.append((pos, mask))
        return len(jobs) - 1

    def _run_jobs(self, jobs: list[tuple[int, np.ndarray]]) -> list[torch.Tensor]:
        t0 = time.perf_counter()
        inputs = [self.perturbed_input(pos, self.tile_players[pos][mask]) for pos, mask in jobs]
        self.counters.seconds["inputs"] += time.perf_counter() - t0
        results: list[torch.Tensor | None] = [None] * len(jobs)

        def keep(i: int, weighted: torch.Tensor) -> None:
            pos, mask = jobs[i]
            results[i] = self.fusion.roi_part(weighted, pos).clone()
            if self.strategy == "paper" and not mask.any():
                self._unperturbed.setdefault(pos, results[i])

        self.runner.run(inputs, self.counters, keep)
        return results

    def labels(self, logits: torch.Tensor) -> torch.Tensor:
        """nnU-Net's own logits -> segmentation rule for (k, C, n) logits -> (k, n) labels."""
        return roi_labels(self.model, logits)


def roi_labels(model: NNUNetModel, logits: torch.Tensor) -> torch.Tensor:
    """(k, C, n) logits -> (k, n) labels with the model's label manager (argmax or regions)."""
    seg = model.label_manager.convert_logits_to_segmentation(logits.permute(1, 0, 2))
    return torch.as_tensor(seg)


def roi_probability(model: NNUNetModel, logits: torch.Tensor, c: int) -> torch.Tensor:
    """(k, C, n) logits -> (k, n) probability of class ``c`` with the model's own nonlinearity
    (softmax, or sigmoid for region models): what the soft value functions read."""
    probs = model.label_manager.apply_inference_nonlin(logits.float().permute(1, 0, 2))
    return torch.as_tensor(probs)[c]
