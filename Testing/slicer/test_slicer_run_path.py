"""The Slicer module's run path without Slicer, on the exact computation of its self-test:
the demo case with a box around the finding, the true kidney as reference and the organs as
anatomy → ``RunRequest`` → job file → ``WorkerProcess`` polled like the module's timer →
live preview and partial φ → result. The planted finding's player must come out on top per mL,
and in the top two by φ: with 60 coalitions the spleen stays one 17.5 mL player, and a flat
game of these 16 players at 400 coalitions gives the finding's 4.7 mL cell and the spleen
φ 1.67 and 1.69 (SE 0.017), a tie; the proportional split gives 1.52 and 1.77."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ShapSegExplainLib.demo import DEMO_MODEL
from ShapSegExplainLib.demo.demo_case import DEMO_SEED, mimic_player_shares, write_demo_case
from ShapSegExplainLib.panel.result_view import read_explanation, table_rows, visible_players
from ShapSegExplainLib.panel.run_request import new_run_folder, prepare_run
from ShapSegExplainLib.panel.worker_events import RunState
from ShapSegExplainLib.panel.worker_process import WorkerProcess, package_root, worker_command
from slicer_helpers import demo_request, poll_until

SELF_TEST_BUDGET = 60      # ShapSegExplainTest.test_DemoEndToEnd's budget (test_slicer_module checks it)


@pytest.mark.slow
def test_module_run_path_on_the_self_tests_case(tmp_path):
    import slicerio
    case = write_demo_case(tmp_path / "case", DEMO_SEED)
    folder = new_run_folder(tmp_path / "runs", "demo")
    job_path, job = prepare_run(folder, demo_request(case, folder / "inputs", DEMO_MODEL, budget=SELF_TEST_BUDGET))
    worker = WorkerProcess(worker_command(sys.executable, job_path), cwd=package_root()).start()
    state, previews = RunState(), []

    def watch(seen):
        players = [e for e in seen if e["event"] == "players"]
        if len(players) > len(previews):        # read each level's preview as the module does, while the run goes on
            assert not any(e["event"] == "result" for e in seen)
            previews.append(sitk.GetArrayFromImage(sitk.ReadImage(players[-1]["preview"])))
        return False
    events = poll_until(worker, state, watch, timeout=900)
    assert state.outcome == "result", state.message + "\n" + "\n".join(state.log[-20:])

    kinds = [e["event"] for e in events]
    partials = [e for e in events if e["event"] == "partial"]
    assert kinds.index("players") < kinds.index("partial") < kinds.index("result") and len(partials) >= 2
    expl = read_explanation(job.out)
    n = len(expl["players"])
    assert partials[-1]["phi"] == [p["phi"] for p in expl["players"]] and len(partials[-1]["phi"]) == n
    assert 2 <= len(previews) <= len(expl["levels"])               # coarse first, then sharpened

    players_ct = slicerio.read_segmentation(str(Path(job.out) / "players.seg.nrrd"))["voxels"].transpose(2, 1, 0)
    assert np.array_equal(previews[-1], players_ct)               # the live overlay ends as the final map
    phi = np.array([p["phi"] for p in expl["players"]])
    assert abs(phi.sum() - (expl["full_value"] - expl["base_value"])) < 1e-9
    shares = mimic_player_shares(players_ct, case.phantom.mimic, n)
    finding = int(np.argmax(shares))
    density = phi / np.array([p["ml"] for p in expl["players"]])
    assert shares.max() >= 0.5 and int(np.argmax(density)) == finding, (shares.round(2), density.round(3))
    assert finding in np.argsort(phi)[-2:], (shares.round(2), phi.round(3))
    assert expl["settings"]["roi_box_ras"] and expl["settings"]["context_player"] is False
    assert json.loads(Path(job.anatomy_labels).read_text())["1"] == "liver"
    organs = {p["organ"] for p in expl["players"]}
    assert "kidney_left" in organs                                # named by the exported anatomy
    rows = table_rows(expl["players"])
    assert rows[0]["segment_id"] == f"player_{int(np.argmax(phi))}" and visible_players(phi, 3).sum() == 3
