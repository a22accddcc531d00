"""The held-out collection, step 5: the real default runs of two engines side by side.

Reads the JSON lines of ``run_defaults.py`` for the new engine and the old one and tables, per
finding both ran: the organ-level answer against the exact values (top 3 by |φ| as a set,
summed |φ − exact| / Σ|exact|, 95 % coverage), tile forwards and seconds of the whole run, and
what the new run says it can name; then the totals and the forwards ratio.

    python benchmarks/heldout/compare_runs.py NEW.jsonl OLD.jsonl [--out table.md]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def cell(r: dict) -> str:
    return (f"{'yes' if r['top3'] else 'no'} · {r['error']:.0%} · {r['coverage']:.2f} · "
            f"{r['tile_forwards']} · {r['seconds']:.0f}")


def table(new: dict[str, dict], old: dict[str, dict]) -> str:
    both = [i for i in new if i in old]
    lines = ["| finding | old: top-3 · err · cov · fwd · s | new: top-3 · err · cov · fwd · s | new run says |",
             "|---|---|---|---|"]
    for i in both:
        said = "; ".join(new[i].get("said") or []) or "–"
        lines.append(f"| {i} | {cell(old[i])} | {cell(new[i])} | {said} |")
    fwd = {k: sum(d[i]["tile_forwards"] for i in both) for k, d in (("new", new), ("old", old))}
    sec = {k: sum(d[i]["seconds"] for i in both) for k, d in (("new", new), ("old", old))}
    for k, d in (("old", old), ("new", new)):
        r = [d[i] for i in both]
        lines.append(f"| **{k}, {len(r)} findings** | top-3 {sum(x['top3'] for x in r)}/{len(r)} · max err "
                     f"{max(x['error'] for x in r):.0%} · mean cov {sum(x['coverage'] for x in r) / len(r):.2f} · "
                     f"{fwd[k]} fwd · {sec[k]:.0f} s | | |")
    lines.append(f"\nWhole-run tile forwards, new / old: **{fwd['new'] / fwd['old']:.2f}×**; "
                 f"seconds: {sec['new'] / sec['old']:.2f}×.")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("new", type=Path)
    ap.add_argument("old", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    text = table(rows(args.new), rows(args.old))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
