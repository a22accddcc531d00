"""The crash-consistency campaign's short form (``benchmarks/crash_campaign.py``; the long
form, 200+ faults on the demo and abdo7-small models, is in docs/usage.md): one fault of every
kind at a random moment, each followed by the panel's next action."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import crash_campaign  # noqa: E402


@pytest.mark.slow
def test_every_fault_ends_in_the_uninterrupted_phi_or_one_clear_line(tmp_path):
    kinds = list(crash_campaign.KINDS)
    code = crash_campaign.main(["--trials", str(len(kinds)), "--configs", "synthetic", "--seed", "7",
                                "--out", str(tmp_path)])
    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    failed = [t for t in trials if not t["ok"]]
    assert code == 0 and not failed, failed
    ran = {t["kind"] for t in trials}
    # disk_full needs a tmpfs of its own (root); elsewhere test_resume and test_bad_input_table inject ENOSPC
    assert ran == set(kinds) - (set() if crash_campaign.can_mount() else {"disk_full"})
    assert all(t["recovery"] in ("resumed", "rerun", "refused_then_rerun", "none") for t in trials)
    assert "| **all** |" in (tmp_path / "table.md").read_text()
