"""From the panel's plain values to a job file the worker reads: regions, panel conventions
(0 = automatic / no limit), folds, anatomy names, and clear errors for what is missing."""
import json

import pytest

from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.run.job import read_job
from ShapSegExplainLib.panel.run_request import (PREVIEW_FILE, RESULT_DIR, RunRequest, box_from_bounds, new_run_folder,
                                           parse_folds, prepare_run, resume_run, saved_coalitions)


def request(**kw) -> RunRequest:
    settings = dict(ct="/data/ct.nrrd", model="/models/demo", target="kidney_left", region="point",
                    ras_point=[10.0, -20.5, 33.0])
    settings.update(kw)
    return RunRequest(**settings)


def test_point_request_becomes_a_job_file_the_worker_reads(tmp_path):
    path, job = prepare_run(tmp_path / "run", request(seed=7, value="soft_fp", normalized=True, device="cpu",
                                                      mirroring=False, players="fcc", spacing_mm=12.0))
    again = read_job(path)
    assert again.to_dict() == job.to_dict()
    assert again.roi_kind() == "roi_point_ras" and again.roi_point_ras == [10.0, -20.5, 33.0]
    assert (again.value, again.normalized, again.seed, again.device, again.mirroring) == ("soft_fp", True, 7, "cpu", False)
    assert (again.players, again.spacing_mm) == ("fcc", 12.0)
    assert again.out == str(tmp_path / "run" / RESULT_DIR) and again.preview == str(tmp_path / "run" / PREVIEW_FILE)
    assert not (tmp_path / "run" / RESULT_DIR).exists()          # the worker creates it atomically


def test_panel_zeros_mean_automatic_and_no_limit(tmp_path):
    _, job = prepare_run(tmp_path, request(budget=0, time_limit_s=0.0, min_size_ml=0.0, configuration="", folds=""))
    assert job.budget is None and job.time_limit is None and job.min_size_ml is None
    assert job.configuration is None and job.folds is None and job.context_player is True
    _, job = prepare_run(tmp_path, request(budget=300, time_limit_s=90.0, min_size_ml=0.5, configuration="3d_fullres",
                                           folds="0, 2", fixed_context=True))
    assert (job.budget, job.time_limit, job.min_size_ml) == (300, 90.0, 0.5)
    assert job.configuration == "3d_fullres" and job.folds == ["0", "2"] and job.context_player is False


def test_box_bounds_become_ras_corners(tmp_path):
    bounds = [-10.0, 30.0, 5.0, 25.0, -40.0, -2.5]          # xmin, xmax, ymin, ymax, zmin, zmax
    path, job = prepare_run(tmp_path, request(region="box", ras_point=None, ras_bounds=bounds))
    assert read_job(path).roi_box_ras == [-10.0, 5.0, -40.0, 30.0, 25.0, -2.5]
    assert job.roi_point_ras is None


def test_anatomy_names_are_written_for_the_worker(tmp_path):
    names = {1: "liver", 2: "kidney_left", 3: "spleen"}
    _, job = prepare_run(tmp_path, request(anatomy=str(tmp_path / "anatomy.nrrd"), anatomy_names=names))
    assert json.loads(open(job.anatomy_labels).read()) == {"1": "liver", "2": "kidney_left", "3": "spleen"}
    _, job = prepare_run(tmp_path / "b", request())
    assert job.anatomy is None and job.anatomy_labels is None


@pytest.mark.parametrize("kw, code, words", [
    (dict(region="box", ras_point=None, ras_bounds=None), "bad_region", "place a ROI box"),
    (dict(region="box", ras_bounds=[0, 10, 0, 10, 5, 5]), "bad_region", "empty"),
    (dict(region="box", ras_bounds=[1.0, -1.0, -1.0, 1.0, -1.0, 1.0]), "bad_region", "empty"),   # unplaced ROI
    (dict(ras_point=None), "bad_region", "place a point"),
    (dict(region="lasso"), "bad_region", "region must be"),
    (dict(target=""), "bad_target", "target"),
    (dict(folds="0 one"), "bad_option", "folds"),
    (dict(budget=-5), "bad_budget", "budget"),
])
def test_bad_panel_values_give_a_clear_error_and_no_job(tmp_path, kw, code, words):
    with pytest.raises(ShapSegError) as e:
        prepare_run(tmp_path / "run", request(**kw))
    assert e.value.code == code and words in str(e.value)
    assert not (tmp_path / "run" / "job.json").exists()


def test_folds_and_bounds_helpers():
    assert parse_folds(" 0 1;2 ") == ["0", "1", "2"] and parse_folds("all") == ["all"] and parse_folds("") is None
    assert box_from_bounds((0, 1, 2, 3, 4, 5)) == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]


def test_run_folders_are_new_and_named_after_the_run(tmp_path):
    a = new_run_folder(tmp_path, "CT 1/kidney_left soft_fp")
    b = new_run_folder(tmp_path, "CT 1/kidney_left soft_fp")
    assert a != b and a.is_dir() and b.is_dir()
    assert a.name.endswith("CT-1-kidney_left-soft_fp") and "/" not in a.name


def test_live_run_state_and_its_label(tmp_path):
    """What the module keeps about a started run is a typed record, named after the run."""
    from ShapSegExplainLib.panel.run_request import LiveRun, run_label
    label = run_label("CT 1", "kidney_left", "soft_fp", "hybrid")
    assert label == "CT 1-kidney_left-soft_fp-hybrid"
    folder = new_run_folder(tmp_path, label)
    _, job = prepare_run(folder, request())
    run = LiveRun(folder, job, label)
    assert run.players == [] and run.preview is None and run.job.out == str(folder / RESULT_DIR)



def test_after_a_crash_the_panel_knows_what_the_journal_saved_and_resumes_the_same_job(tmp_path):
    import numpy as np

    from ShapSegExplainLib.run.journal import Journal
    path, job = prepare_run(tmp_path / "run", request())
    assert saved_coalitions(job) == 0                                   # nothing ran
    journal = Journal.start(job, resume=False)
    for k in (5, 3):
        journal.play(np.ones((k, 4), bool), False, lambda c: np.zeros(len(c)))
    assert saved_coalitions(job) == 8
    other = read_job(prepare_run(tmp_path / "run", request(seed=3))[0])
    assert saved_coalitions(other) == 0                                 # other settings: not this journal
    path, resumed = resume_run(tmp_path / "run", job)
    again = read_job(path)
    assert again.resume and {**again.to_dict(), "resume": False} == job.to_dict()
