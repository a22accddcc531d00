"""The Slicer-free helpers of the GUI: reading worker events in chunks, the run state, and
finding TotalSegmentator models on a fake home folder."""
import json

from ShapSegExplainLib.panel.model_discovery import find_models, totalsegmentator_results_dirs
from ShapSegExplainLib.panel.worker_events import EventReader, RunState


def test_reader_handles_partial_lines_and_noise():
    reader = EventReader()
    lines = [json.dumps({"event": "started", "pid": 1}), "a stray library print",
             json.dumps({"event": "progress", "phase": "load", "done": 0, "total": 1, "message": "m"})]
    text = "\n".join(lines) + "\n" + json.dumps({"event": "result", "out": "/x"})
    got = []
    for i in range(0, len(text), 7):                 # arbitrary chunking, as QProcess delivers it
        got += reader.feed(text[i:i + 7])
    assert [e["event"] for e in got] == ["started", "log", "progress"]
    assert got[1]["message"] == "a stray library print"
    assert reader.flush() == [{"event": "result", "out": "/x"}] and reader.flush() == []


def test_run_state_progress_partials_eta_and_outcome():
    s = RunState()
    s.update({"event": "progress", "phase": "players", "done": 0, "total": 1, "message": "p"}, now=0.0)
    assert s.eta_seconds() is None
    s.update({"event": "players", "players": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]}, now=1.0)
    s.update({"event": "progress", "phase": "shapley", "done": 0, "total": 100, "message": ""}, now=2.0)
    s.update({"event": "progress", "phase": "shapley", "done": 25, "total": 100, "message": ""}, now=7.0)
    assert s.percent == 25 and abs(s.eta_seconds() - 15.0) < 1e-9
    s.update({"event": "partial", "phi": [0.5, -0.1], "se": [0.1, 0.2], "ratio": 0.3}, now=8.0)
    assert s.phi == [0.5, -0.1] and s.ratio == 0.3 and not s.finished
    s.update({"event": "error", "message": "no kidney here", "code": "target_absent"}, now=9.0)
    assert s.finished and s.outcome == "error" and s.error_code == "target_absent" and s.message == "no kidney here"


def _fake_model(folder, labels):
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text("{}")
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"")


def test_totalsegmentator_models_found_in_a_fake_home(tmp_path):
    home = tmp_path / "home"
    results = home / ".totalsegmentator" / "nnunet" / "results"
    _fake_model(results / "Dataset291_TotalSegmentator_part1_organs_1559subj" /
                "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres", {"background": 0, "spleen": 1, "kidney_right": 2})
    incomplete = results / "Dataset297_TotalSegmentator_total_3mm_1559subj" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    incomplete.mkdir(parents=True)                  # a download that never finished: not offered
    demo = tmp_path / "DemoModel"
    _fake_model(demo, {"background": 0, "liver": 1})
    found = find_models(demo, env={}, home=home)
    assert [f.source for f in found] == ["demo", "totalsegmentator"]
    assert found[1].classes == ("spleen", "kidney_right") and "part1_organs" in found[1].label
    assert found[0].classes == ("liver",)
    env = {"TOTALSEG_WEIGHTS_PATH": str(tmp_path / "w"), "TOTALSEG_HOME_DIR": str(tmp_path / "h")}
    assert totalsegmentator_results_dirs(env) == [tmp_path / "w", tmp_path / "h" / "nnunet" / "results"]
    assert find_models(None, env={}, home=tmp_path / "nobody") == []


def test_model_folder_check_and_python_slicer_lookup(tmp_path):
    from ShapSegExplainLib.demo import DEMO_MODEL
    from ShapSegExplainLib.panel.model_discovery import is_model_folder
    from ShapSegExplainLib.panel.worker_process import find_python_slicer
    assert is_model_folder(DEMO_MODEL) and not is_model_folder(tmp_path) and not is_model_folder("")
    assert find_python_slicer(tmp_path) is None
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    assert find_python_slicer(tmp_path) == str(launcher)

