"""The report's small pictures of numbers: the top players as bars, the deletion /
insertion curves with AOPC and ABPC, and the run's convergence."""
from __future__ import annotations

import numpy as np

from ..display import NOT_RESOLVED, PlayerStyle

TOP_K = 12         # players in the bar chart
STOPPED = {"converged": "converged", "budget": "budget reached", "time_limit": "stopped at the time limit",
           "forward_budget": "tile-forward budget reached", "enumerated": "every coalition evaluated",
           "space_exhausted": "every coalition evaluated", "max_refinements": "refinement cap reached",
           "finest": "finest players reached", "small": "no large player left to refine",
           "left_whole": "the rest cannot be split in the image as it is",
           "refined": "refined"}


def bars(ax, rows: list[dict], styles: list[PlayerStyle], unit: str) -> None:
    """The top players by |φ| as horizontal bars with 95 % intervals, largest on top;
    hatched where the interval contains 0; the rest summed in the title."""
    order = sorted(range(len(rows)), key=lambda i: -abs(rows[i]["phi"]))
    shown = order[:TOP_K][::-1]
    for y, i in enumerate(shown):
        s = styles[i]
        se = rows[i]["se"]
        ax.barh(y, rows[i]["phi"], xerr=None if se is None else 1.96 * se, color=s.rgb, alpha=0.45 if s.uncertain else 1.0,
                hatch="///" if s.uncertain else None, edgecolor="0.3", linewidth=0.5,
                error_kw={"ecolor": "0.2", "capsize": 3, "linewidth": 1})
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([(f"[{styles[i].rank}] " if styles[i].marked else "") +
                        f"{rows[i]['name']}  ({rows[i]['ml']:.1f} mL)" for i in shown], fontsize=8)
    ax.axvline(0, color="0.3", linewidth=0.8)
    u = f" ({unit})" if unit else ""
    ax.set_xlabel(f"Shapley value φ{u} · bars: 95 % interval · hatched: interval contains 0", fontsize=8)
    rest = order[TOP_K:]
    more = f"; {len(rest)} more players, Σφ = {sum(rows[i]['phi'] for i in rest):+.3g}" if rest else ""
    named = any(s.marked for s in styles)
    ax.set_title(f"top {len(shown)} players by |φ| ([n]: resolved drivers, numbered on the slices){more}"
                 + ("" if named else f"\n{NOT_RESOLVED}"), fontsize=9, color="0.1" if named else "#b2182b")
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize=8)


def curves(ax, faith: dict | None, unit: str) -> None:
    """MoRF, LeRF and insertion curves over the removed volume, AOPC and ABPC in the title."""
    if not faith or not faith.get("morf"):
        _empty(ax, "faithfulness curves not computed")
        return
    x = faith.get("ml_removed")
    label = "support removed (mL)"
    if not x:
        x, label = [100 * f for f in faith["fraction_removed"]], "support removed (%)"
    per = " per mL" if faith.get("order") == "density" else ""
    ax.plot(x, faith["morf"], "-o", ms=2.5, color="#b2182b", label=f"remove most relevant{per} first")
    ax.plot(x, faith["lerf"], "-o", ms=2.5, color="#2166ac", label=f"remove least relevant{per} first")
    ax.plot(x, faith["insertion"], "--", color="0.35", label=f"insert most relevant{per} first")
    ax.set_xlabel(label, fontsize=8)
    ax.set_ylabel(f"value{f' ({unit})' if unit else ''}", fontsize=8)
    ax.set_title(f"faithfulness: AOPC {faith['aopc']:.3g} · ABPC {faith['abpc']:.3g}", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def convergence(ax, expl: dict) -> None:
    """The convergence ratio (max SE / spread of φ) after each batch (or level) against tile
    forwards, with the coalitions on the top axis; the stopping threshold dashed."""
    history = expl.get("shapley", {}).get("history", [])
    points = expl.get("convergence") or ([] if any("game" in h for h in history) else  # an older result's batches
                                         [{"coalitions": h["n_evaluations"], "ratio": h["ratio"]}
                                          for h in history if "ratio" in h])
    points = [p for p in points if p.get("ratio") is not None and np.isfinite(p["ratio"]) and p["ratio"] > 0]
    if expl.get("shapley", {}).get("exact") or not points:
        _empty(ax, "exact Shapley values (every coalition evaluated)" if expl.get("shapley", {}).get("exact")
               else "no convergence record")
        return
    coalitions = np.array([p["coalitions"] for p in points], float)
    has_forwards = all("tile_forwards" in p for p in points)
    x = np.array([p["tile_forwards"] for p in points], float) if has_forwards else coalitions
    ax.plot(x, [p["ratio"] for p in points], "-o", ms=2.5, color="0.2")
    ax.set_yscale("log")
    threshold = (expl.get("settings") or {}).get("threshold")
    if threshold:
        ax.axhline(threshold, color="#b2182b", linestyle="--", linewidth=0.8, label=f"stop below {threshold:g}")
        ax.legend(fontsize=7, frameon=False)
    ax.set_xlabel("tile forwards" if has_forwards else "coalitions", fontsize=8)
    ax.set_ylabel("convergence ratio", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    level = " per level" if expl.get("levels") else " per batch"
    reason = expl["shapley"].get("stop_reason", "")
    ax.set_title(f"convergence{level}: {STOPPED.get(reason, reason)}", fontsize=9)
    if has_forwards and len(x) > 1 and np.all(np.diff(x) > 0) and np.all(np.diff(coalitions) > 0):
        top = ax.secondary_xaxis("top", functions=(lambda v: np.interp(v, x, coalitions),
                                                   lambda c: np.interp(c, coalitions, x)))
        top.set_xlabel("coalitions", fontsize=8)
        top.tick_params(labelsize=7)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="0.4", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
