"""The study report: a row per explanation, the paper's aggregates (mean ± SD per
abstraction × value function), as CSV and Markdown, and the plots (``study.plots``).

Rows are read back from each explanation's own ``explanation.json``, so the report of a
resumed study is the same as that of an uninterrupted one.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from ..run.outputs import RESULT_MARKER
from .manifest import StudyTask
from .tasks import attempts

COLUMNS = ("case", "setting", "players", "value", "status", "attempts", "resumed", "worker_pid", "model_loaded", "M", "coalitions", "tile_forwards", "seconds",
           "aopc", "abpc", "deletion_auc", "insertion_auc", "alignment", "additivity_error", "top_drivers", "error",
           "folder")
MEASURES = ("M", "coalitions", "tile_forwards", "seconds", "aopc", "abpc", "deletion_auc", "insertion_auc", "alignment")
TOP = 3


def value_name(job: dict) -> str:
    return job["value"] + (" (normalised)" if job.get("normalized") else "")


def row_of(task: StudyTask, result: dict, state: Path) -> dict:
    """One explanation's row, from its folder when it finished."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(case=task.case, setting=task.setting, players=task.job["players"], value=value_name(task.job),
               status=result["status"], attempts=attempts(state, task.key), folder=task.job["out"],
               error=result.get("error", ""), worker_pid=result.get("pid", ""), resumed=result.get("resumed", ""),
               model_loaded=result.get("model_loaded", ""))
    marker = Path(task.job["out"]) / RESULT_MARKER
    if result["status"] in ("done", "reused") and marker.is_file():
        row.update(measures(json.loads(marker.read_text())))
    return row


def measures(expl: dict) -> dict:
    """Cost, faithfulness and the top drivers of one explanation."""
    from ..run.explain import top_drivers
    faith = expl.get("faithfulness") or {}
    top = top_drivers(expl, TOP)
    return {"M": len(expl["players"]), "coalitions": expl["shapley"]["n_evaluations"],
            "tile_forwards": expl["stats"]["tile_forwards"], "seconds": expl["stats"]["seconds"],
            "aopc": faith.get("aopc"), "abpc": faith.get("abpc"), "deletion_auc": faith.get("deletion_auc"),
            "insertion_auc": faith.get("insertion_auc"), "alignment": faith.get("anatomical_alignment"),
            "additivity_error": expl["additivity_error"],
            "top_drivers": "; ".join(f"{r['name']} {r['phi']:+.3g}" for r in top)}


def aggregates(rows: list[dict]) -> list[dict]:
    """Mean and SD of every measure per abstraction × value function (finished rows only)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] in ("done", "reused"):
            groups.setdefault((r["players"], r["value"]), []).append(r)
    out = []
    for (players, value), members in sorted(groups.items()):
        agg = {"players": players, "value": value, "n": len(members)}
        for m in MEASURES:
            x = np.array([float(r[m]) for r in members if r[m] not in ("", None)], float)
            agg[f"{m}_mean"] = float(x.mean()) if x.size else None
            agg[f"{m}_sd"] = float(x.std(ddof=1)) if x.size > 1 else (0.0 if x.size else None)
        out.append(agg)
    return out


def write_text(path: Path, text: str) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def write_study_report(out: Path, tasks: list[StudyTask], results: dict, state: Path) -> list[dict]:
    """``study.csv``, ``aggregates.csv``, ``study.md`` and the plots; returns the rows."""
    from .plots import write_plots
    rows = [row_of(t, results[t.key], state) for t in tasks]
    aggs = aggregates(rows)
    write_text(out / "study.csv", to_csv(rows, COLUMNS))
    write_text(out / "aggregates.csv", to_csv(aggs, list(aggs[0]) if aggs else ["players", "value", "n"]))
    plots = write_plots(out, rows)
    write_text(out / "study.md", markdown(rows, aggs, plots))
    return rows


def to_csv(rows: list[dict], columns) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def fmt(x, digits: int = 3) -> str:
    if x in ("", None):
        return ""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(x)
    return f"{float(x):.{digits}g}"


def markdown(rows: list[dict], aggs: list[dict], plots: dict[str, str]) -> str:
    """``study.md``: counts, the aggregates, every explanation, the failures, the plots."""
    status = {s: sum(r["status"] == s for r in rows) for s in ("done", "reused", "failed", "not run")}
    lines = [f"# Study: {len(rows)} explanations",
             "", ", ".join(f"{n} {s}" for s, n in status.items() if n) + ".", "",
             "## Per abstraction × value function (mean ± SD)", "",
             "| players | value | n | M | tile forwards | seconds | AOPC | ABPC | deletion AUC | insertion AUC "
             "| alignment |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in aggs:
        cells = [f"{fmt(a[m + '_mean'])} ± {fmt(a[m + '_sd'], 2)}" if a[m + "_mean"] is not None else ""
                 for m in ("M", "tile_forwards", "seconds", "aopc", "abpc", "deletion_auc", "insertion_auc",
                           "alignment")]
        lines.append(f"| {a['players']} | {a['value']} | {a['n']} | " + " | ".join(cells) + " |")
    lines += ["", "## Every explanation", "",
              "| case | setting | status | tries | M | coalitions | tile forwards | s | AOPC | ABPC | del AUC | ins AUC "
              "| alignment | top drivers |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([r["case"], r["setting"], r["status"], str(r["attempts"] or "")]
                                       + [fmt(r[m]) for m in ("M", "coalitions", "tile_forwards", "seconds", "aopc",
                                                              "abpc", "deletion_auc", "insertion_auc", "alignment")]
                                       + [r["top_drivers"]]) + " |")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed", ""] + [f"* {r['case']} / {r['setting']}: {r['error']}" for r in failed]
    lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()]
    return "\n".join(lines) + "\n"
