"""φ, SE and player names of two bench_cost runs compared bit for bit, case by case: a refactor
must leave every explanation as it was (run bench_cost once with each checkout, then this).

    python benchmarks/bitwise_phi.py BEFORE_DIR AFTER_DIR [--setup default]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def players(folder: Path) -> tuple[list, float, float, int]:
    expl = json.loads((folder / "explanation.json").read_text())
    rows = [(r["name"], r["phi"], r["se"]) for r in expl["players"]]
    return rows, expl["full_value"], expl["base_value"], expl["stats"]["tile_forwards"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, nargs="+", help="bench_cost output folders of the first checkout")
    ap.add_argument("--after", type=Path, nargs="+", required=True, help="... of the second")
    ap.add_argument("--setup", default="default")
    args = ap.parse_args(argv)
    find = lambda roots: {p.parent.name: p for r in roots for p in r.glob(f"*/{args.setup}")}   # noqa: E731
    before, after = find(args.before), find(args.after)
    differ = 0
    for case in sorted(set(before) & set(after)):
        a, b = players(before[case]), players(after[case])
        same = a[:3] == b[:3]
        differ += not same
        print(f"{case}: {len(a[0])} players, φ, SE, names, v(N), v(∅) bitwise equal: {same}; "
              f"tile forwards {a[3]} and {b[3]}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
