"""The study's plots: faithfulness against anatomical alignment per abstraction (the paper's
trade-off), cost per abstraction, and a grid of per-case thumbnails (the report's axial view)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 110
MARKERS = "osD^v<>p*h"


def write_plots(out: Path, rows: list[dict]) -> dict[str, str]:
    """Every plot the finished rows allow; returns name -> file name (relative to ``out``)."""
    done = [r for r in rows if r["status"] in ("done", "reused") and r["aopc"] not in ("", None)]
    if not done:
        return {}
    plots = {"trade-off": "tradeoff.png", "cost": "cost.png", "thumbnails": "thumbnails.png"}
    for name, draw in (("trade-off", tradeoff), ("cost", cost), ("thumbnails", thumbnails)):
        fig = draw(done)
        save(fig, out / plots[name])
    return plots


def save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI, metadata={"Software": None})
    tmp.replace(path)


def new_figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def colours(names: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps
    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def tradeoff(rows: list[dict]):
    """AOPC against alignment, a panel per value function: a point per explanation, the
    abstraction's mean ± SD as a cross."""
    values = sorted({r["value"] for r in rows})
    abstractions = sorted({r["players"] for r in rows})
    colour = colours(abstractions)
    fig = new_figure((4.6 * len(values) + 0.6, 4.2))
    axes = fig.subplots(1, len(values), squeeze=False)[0]
    for ax, value in zip(axes, values):
        for a in abstractions:
            pts = [(float(r["alignment"]), float(r["aopc"])) for r in rows if r["value"] == value and r["players"] == a
                   and r["alignment"] not in ("", None)]
            if not pts:
                continue
            x, y = np.array(pts).T
            ax.scatter(x, y, color=colour[a], alpha=0.45, s=22)
            ax.errorbar(x.mean(), y.mean(), xerr=x.std(ddof=1) if x.size > 1 else 0,
                        yerr=y.std(ddof=1) if y.size > 1 else 0, color=colour[a], marker="o", ms=9,
                        mec="black", capsize=3, label=f"{a} (n={x.size})")
        ax.set_xlabel("anatomical alignment (share of Σ|φ| in pure-organ players)")
        ax.set_ylabel(f"AOPC ({value})")
        ax.set_title(value, fontsize=10)
        ax.set_xlim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle("faithfulness against anatomical interpretability, per abstraction "
                 "(points: explanations; crosses: mean ± SD)", fontsize=10)
    return fig


def cost(rows: list[dict]):
    """Tile forwards and seconds per abstraction, a marker per value function."""
    abstractions = sorted({r["players"] for r in rows})
    values = sorted({r["value"] for r in rows})
    fig = new_figure((10, 4))
    axes = fig.subplots(1, 2)
    rng = np.random.default_rng(0)          # jitter only
    for ax, measure, label in ((axes[0], "tile_forwards", "tile forwards"), (axes[1], "seconds", "seconds")):
        for i, a in enumerate(abstractions):
            for j, v in enumerate(values):
                y = np.array([float(r[measure]) for r in rows if r["players"] == a and r["value"] == v])
                if y.size:
                    x = i + (j - (len(values) - 1) / 2) * 0.18 + rng.uniform(-0.04, 0.04, y.size)
                    ax.scatter(x, y, marker=MARKERS[j % len(MARKERS)], color=f"C{j}", alpha=0.7,
                               label=v if i == 0 else None)
            y = [float(r[measure]) for r in rows if r["players"] == a]
            ax.hlines(np.mean(y), i - 0.35, i + 0.35, color="black", lw=1.5)
        ax.set_xticks(range(len(abstractions)), abstractions)
        ax.set_yscale("log")
        ax.set_ylabel(f"{label} per explanation (log)")
        ax.grid(alpha=0.3, which="both", axis="y")
    axes[0].legend(fontsize=8)
    fig.suptitle("cost per abstraction (black line: mean)", fontsize=10)
    return fig


def thumbnails(rows: list[dict]):
    """The report's axial view of every explanation: a row per case, a column per setting."""
    from ..report.figure import draw_axial
    cases = list(dict.fromkeys(r["case"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    fig = new_figure((2.3 * len(settings) + 0.4, 2.5 * len(cases) + 0.4))
    axes = fig.subplots(len(cases), len(settings), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for r in rows:
        ax = axes[cases.index(r["case"]), settings.index(r["setting"])]
        draw_axial(ax, r["folder"], f"{r['case']}\n{r['setting']}\nAOPC {float(r['aopc']):.3g}")
        ax.title.set_fontsize(7)
    fig.suptitle("every explanation's axial view (red raises the value, blue lowers it; yellow: the ROI)",
                 fontsize=10)
    return fig
