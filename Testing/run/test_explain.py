"""``shapseg explain``: the job schema, the outputs (read back with slicerio and SimpleITK),
additivity, strategy independence, and atomic output folders."""
import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import call_cli, run_cli, synthetic_ct
from ShapSegExplainLib.colors import phi_colors
from ShapSegExplainLib.display import color_scale
from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.nnunet.model import load_model
from ShapSegExplainLib.run.explain import run_explanation
from ShapSegExplainLib.run.job import ExplainJob, job_from_dict, read_job
from ShapSegExplainLib.run.outputs import segment_name
from ShapSegExplainLib.run.state import Cancelled

FILES = ("players.seg.nrrd", "attribution.nrrd", "roi.seg.nrrd", "attributions.csv", "explanation.json",
         "report.png", "coalitions.npz", "ct_view.nrrd")


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    sitk.WriteImage(synthetic_ct(), str(path))
    return path


def make_job(ct_file, model_dir, out, **kw) -> ExplainJob:
    settings = dict(ct=str(ct_file), model=str(model_dir), target="1", out=str(out), roi_box=[14, 14, 8, 20, 20, 11],
                    players="fcc", spacing_mm=10.0, margin_mm=4.0, value="soft_dice", budget=60, device="cpu",
                    faithfulness_steps=4, mirroring=False)     # mirroring: nnunet/test_exactness.py
    settings.update(kw)
    return ExplainJob(**settings).check()


@pytest.fixture(scope="module")
def explained(ct_file, model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "result"
    events = []
    expl = run_explanation(make_job(ct_file, model_dirs["one_fold"], out), events.append)
    return {"out": out, "expl": expl, "events": events}


def test_job_schema_round_trip_and_clear_errors(tmp_path):
    job = ExplainJob(ct="a.nii.gz", model="m", target="liver", out="o", roi_point_ras=[1, 2, 3]).check()
    assert read_job(job.write(tmp_path / "job.json")) == job
    good = job.to_dict()
    for change, code, words in [({"bogus": 1}, "bad_job", "unknown job field"),
                                ({"roi_box": [1, 2, 3, 4, 5, 6]}, "bad_job", "exactly one ROI"),
                                ({"roi_point_ras": [1, 2]}, "bad_job", "needs 3 numbers"),
                                ({"budget": 0}, "bad_budget", "budget"),
                                ({"version": 99}, "bad_job", "version")]:
        with pytest.raises(ShapSegError) as e:
            job_from_dict({**good, **change})
        assert e.value.code == code and words in e.value.message
    bad = dict(good)
    del bad["ct"]
    with pytest.raises(ShapSegError, match="lacks ct"):
        job_from_dict(bad)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ShapSegError, match="cannot read the job file"):
        read_job(tmp_path / "broken.json")


@pytest.mark.parametrize("field, value", [("players", "voxels"), ("value", "iou"), ("strategy", "fast"),
                                          ("estimator", "mc"), ("device", "tpu")])
def test_every_choice_field_is_checked_before_any_work(tmp_path, field, value):
    """A job with a bad choice fails in ``check()``, naming the field and the engine's own
    choices, before the model (here: a folder that does not exist) is touched."""
    from ShapSegExplainLib import choices
    job = ExplainJob(ct="a.nii.gz", model=str(tmp_path / "no-model"), target="liver", out=str(tmp_path / "o"),
                     roi_point_ras=[1, 2, 3], **{field: value})
    with pytest.raises(ShapSegError) as e:
        run_explanation(job)
    allowed = {"players": choices.PLAYERS, "value": choices.VALUES, "strategy": choices.STRATEGIES,
               "estimator": choices.ESTIMATORS, "device": choices.DEVICES}[field]
    assert e.value.code == "bad_option" and field in e.value.message and ", ".join(allowed) in e.value.message
    assert not (tmp_path / "o").exists()


def test_command_line_job_and_settings_are_one_mapping():
    """``shapseg explain`` with only the required options is the job's defaults, and the model
    and player settings read the job's fields by name (``--no-mirroring`` -> ``mirroring``)."""
    from dataclasses import asdict

    from ShapSegExplainLib.cli import build_parser, job_from_args
    from ShapSegExplainLib.nnunet.model import ModelSettings
    from ShapSegExplainLib.players.maps import PlayerSettings
    required = ["explain", "--ct", "c.nii.gz", "--model", "m", "--target", "t", "--roi-point", "1,2,3", "--out", "o"]
    job = job_from_args(build_parser().parse_args(required))
    assert job == ExplainJob(ct="c.nii.gz", model="m", target="t", out="o", roi_point=[1.0, 2.0, 3.0]).check()
    job = job_from_args(build_parser().parse_args(
        required + ["--no-mirroring", "--step", "0.25", "--fixed-context", "--no-slic-anatomy", "--players", "slic",
                    "--spacing-mm", "12", "--batch-size", "2", "--folds", "0", "1"]))
    assert (job.mirroring, job.step, job.context_player, job.slic_anatomy) == (False, 0.25, False, False)
    assert ModelSettings.of(job) == ModelSettings(model_dir="m", folds=["0", "1"], mirroring=False, step=0.25,
                                                  batch_size=2)
    players = PlayerSettings.of(job)
    assert players == PlayerSettings(abstraction="slic", spacing_mm=12.0, slic_anatomy=False)
    assert set(asdict(players)) - {"abstraction"} <= set(asdict(job))


def test_outputs_exist_and_nothing_partial_is_left(explained):
    out = explained["out"]
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert sorted(p.name for p in out.parent.iterdir()) == [".result.lock", "result"]   # no .partial or .old
    expl = json.loads((out / "explanation.json").read_text())
    for key in ("players", "base_value", "full_value", "value", "target", "settings", "stats", "faithfulness"):
        assert key in expl
    for key in ("coalitions", "tile_forwards", "tile_forwards_roi", "cache_hits", "seconds"):
        assert key in expl["stats"]
    assert expl["stats"]["tile_forwards"] <= expl["stats"]["tile_forwards_roi"]
    assert set(expl["players"][0]) >= {"id", "name", "kind", "organ", "voxels", "phi", "se"}


def test_phi_sums_to_full_minus_base(explained):
    expl = json.loads((explained["out"] / "explanation.json").read_text())
    phi = np.array([p["phi"] for p in expl["players"]])
    assert abs(phi.sum() - (expl["full_value"] - expl["base_value"])) < 1e-9
    assert abs(expl["additivity_error"]) < 1e-9


def test_players_seg_reads_back_with_names_colours_and_values(explained):
    import slicerio
    out = explained["out"]
    expl = json.loads((out / "explanation.json").read_text())
    seg = slicerio.read_segmentation(str(out / "players.seg.nrrd"))
    rows = expl["players"]
    phi = np.array([r["phi"] for r in rows])
    assert [s["name"] for s in seg["segments"]] == [segment_name(r["name"], r["phi"]) for r in rows]
    colours = np.array([s["color"] for s in seg["segments"]])
    drawn = [r["kind"] != "context" for r in rows]           # the report's scale: the context is not drawn
    assert np.allclose(colours, phi_colors(phi, color_scale(phi, drawn)), atol=1e-5)
    assert [float(s["tags"]["ShapSegExplain.phi"]) for s in seg["segments"]] == phi.tolist()
    assert [float(s["tags"]["ShapSegExplain.se"]) for s in seg["segments"]] == [r["se"] for r in rows]
    # voxels: the label of each segment, in the CT's geometry (slicerio's voxels are i, j, k)
    ct = sitk.ReadImage(expl["settings"]["ct"])
    assert seg["voxels"].shape == ct.GetSize()
    labels = seg["voxels"].transpose(2, 1, 0)
    counts = np.bincount(labels.reshape(-1), minlength=len(rows) + 1)
    assert (counts[1:] > 0).all()
    lps = np.asarray(seg["ijkToLPS"])
    assert np.allclose(lps[:3, 3], ct.GetOrigin()) and np.allclose(np.diag(lps)[:3], ct.GetSpacing())
    # the float map carries each voxel's player's phi
    attribution = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "attribution.nrrd")))
    lut = np.concatenate([[0.0], phi]).astype(np.float32)
    assert np.array_equal(attribution, lut[labels])
    roi = slicerio.read_segmentation(str(out / "roi.seg.nrrd"))
    assert [s["name"] for s in roi["segments"]][0] == "ROI"


def test_table_and_audit_match_the_json(explained):
    out = explained["out"]
    expl = json.loads((out / "explanation.json").read_text())
    with open(out / "attributions.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["id"]) for r in table] == [p["id"] for p in expl["players"]]
    assert np.allclose([float(r["phi"]) for r in table], [p["phi"] for p in expl["players"]], rtol=0, atol=1e-12)
    ranks = sorted(table, key=lambda r: int(r["rank"]))
    assert [float(r["phi"]) for r in ranks] == sorted((float(r["phi"]) for r in table), reverse=True)
    audit = np.load(out / "coalitions.npz")
    assert audit["values"].shape[0] == expl["shapley"]["n_evaluations"]
    m = int(audit["n_players"])
    coalitions = np.unpackbits(audit["coalitions"], axis=1)[:, :m].astype(bool)
    # coarse to fine (the default): every game's coalitions as the atoms present
    assert m == expl["shapley"]["audit_players"] >= len(expl["players"]) and len(expl["levels"]) > 1
    assert coalitions.shape == (expl["shapley"]["n_evaluations"], m)
    full = coalitions.all(axis=1)
    assert (audit["values"][full] == expl["full_value"]).all()
    assert audit["values"][~coalitions.any(axis=1)][0] == expl["base_value"]


def test_events_report_phases_players_and_partials(explained):
    events = explained["events"]
    phases = [e["phase"] for e in events if e["event"] == "progress"]
    order = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert order == ["load", "prepare", "roi", "players", "shapley", "faithfulness", "write"]
    partials = [e for e in events if e["event"] == "partial"]
    # coarse to fine: every level sends its players, then their φ (the live overlay sharpens)
    players = None
    for e in events:
        if e["event"] == "players":
            players = e["players"]
        elif e["event"] == "partial":
            assert len(e["phi"]) == len(players)
    assert sum(e["event"] == "players" for e in events) == len(explained["expl"]["levels"]) > 1
    assert [p["name"] for p in players] == [p["name"] for p in explained["expl"]["players"]]
    assert partials[-1]["phi"] == [p["phi"] for p in explained["expl"]["players"]]
    assert [e["n_evaluations"] for e in partials] == sorted(e["n_evaluations"] for e in partials)


def test_strategy_changes_the_cost_never_the_result(ct_file, model_dirs, explained, tmp_path):
    ref = explained["expl"]
    other = run_explanation(make_job(ct_file, model_dirs["one_fold"], tmp_path / "roi", strategy="roi"))
    assert [p["phi"] for p in other["players"]] == [p["phi"] for p in ref["players"]]
    assert other["full_value"] == ref["full_value"] and other["base_value"] == ref["base_value"]
    assert other["stats"]["tile_forwards"] == other["stats"]["tile_forwards_roi"]
    assert ref["stats"]["tile_forwards"] < other["stats"]["tile_forwards"]


def test_a_memory_limit_bounds_the_memo_and_changes_the_cost_never_the_result(ct_file, model_dirs, explained,
                                                                                tmp_path):
    """--max-memory: the memo gets half of it (peak within, least recently used evicted), the
    CPU batch fits the other half; φ stays bitwise the same at the same batch size."""
    from ShapSegExplainLib.nnunet import memory
    ref = explained["expl"]
    assert ref["model"]["memory"]["from"] == "half the available memory" and ref["stats"]["cache_evictions"] == 0
    memo = ref["stats"]["peak_cache_bytes"] // 4                    # a quarter of what the run kept
    gib = 2 * memo / 2 ** 30
    small = run_explanation(make_job(ct_file, model_dirs["one_fold"], tmp_path / "small", max_memory_gb=gib,
                                     batch_size=ref["model"]["batch_size"]))
    assert small["model"]["memory"]["from"] == "--max-memory"
    assert 0 < small["stats"]["peak_cache_bytes"] <= memo + 1 and small["stats"]["cache_evictions"] > 0
    assert [p["phi"] for p in small["players"]] == [p["phi"] for p in ref["players"]]
    assert small["stats"]["tile_forwards"] > ref["stats"]["tile_forwards"]
    model = load_model(model_dirs["one_fold"], mirroring=False, device="cpu", max_memory_gb=gib)
    choice = memory.choose_batch_size(model)
    # not even one tile fits, yet the batch stays at the floor: free memory never picks the game
    assert choice.free_bytes == int(gib * 2 ** 30) and choice.tile_bytes > choice.free_bytes
    assert choice.size == memory.FLOOR == 2


def test_failed_or_cancelled_runs_leave_no_result(ct_file, model_dirs, tmp_path):
    out = tmp_path / "result"
    with pytest.raises(ShapSegError) as e:          # fails after the model is loaded and players are built
        run_explanation(make_job(ct_file, model_dirs["one_fold"], out, reference=str(tmp_path / "missing.nii.gz")))
    assert e.value.code == "bad_reference"
    assert [p.name for p in tmp_path.iterdir()] == [".result.lock"]      # released, nothing written
    calls = []

    def cancel_during_writing() -> bool:
        calls.append(1)
        return any(ev.get("phase") == "write" for ev in seen)
    seen = []
    with pytest.raises(Cancelled):
        run_explanation(make_job(ct_file, model_dirs["one_fold"], out), seen.append, cancel_during_writing)
    assert sorted(x.name for x in tmp_path.iterdir()) == [".result.journal", ".result.lock"]  # --resume can go on


def test_output_folder_rules(ct_file, model_dirs, tmp_path, explained):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ShapSegError) as e:
        run_explanation(make_job(ct_file, model_dirs["one_fold"], foreign))
    assert e.value.code == "bad_output" and (foreign / "notes.txt").read_text() == "keep me"
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "explanation.json").write_text("{}")
    expl = run_explanation(make_job(ct_file, model_dirs["one_fold"], previous, budget=30, faithfulness_steps=0,
                                    context_player=False))
    assert json.loads((previous / "explanation.json").read_text())["shapley"]["n_evaluations"] == 30
    assert expl["faithfulness"] is None
    kinds = [p["kind"] for p in expl["players"]]                 # the context is fixed, not a player
    assert "context" not in kinds and len(kinds) == len(explained["expl"]["players"]) - 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mine.lock", ".previous.lock", "mine", "previous"]


def test_cli_explain_prints_drivers_and_writes_outputs(ct_file, model_dirs, tmp_path):
    out = tmp_path / "cli"
    r = call_cli("explain", "--ct", ct_file, "--model", model_dirs["one_fold"], "--target", "1",
                "--roi-box", "14,14,8,20,20,11", "--players", "organ", "--value", "fp", "--device", "cpu",
                "--no-mirroring", "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "top drivers" in r.stdout and str(out) in r.stdout
    expl = json.loads((out / "explanation.json").read_text())
    assert expl["settings"]["players"] == "organ" and expl["value"]["name"] == "fp"
    assert expl["shapley"]["exact"]                       # few organ players: 2^M coalitions
    # a real process: the shell sees exit code 2 and one line, no traceback
    r = run_cli("explain", "--ct", ct_file, "--model", model_dirs["one_fold"], "--target", "nonsense",
                "--roi-box", "14,14,8,20,20,11", "--out", tmp_path / "bad")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("shapseg: error: unknown target") and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()


def test_report_redraws_from_the_output_files_pixel_equal(explained, ct_file, tmp_path):
    """``shapseg report OUT`` draws the run's report.png again from the files alone (the CT
    from ct_view.nrrd), pixel for pixel; other options give another picture; a folder
    that is not a result, or an older one whose CT is gone, is one line and exit code 2."""
    import shutil

    from matplotlib.image import imread
    out = explained["out"]
    r = call_cli("report", out, "--to", tmp_path / "again.png")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(imread(out / "report.png"), imread(tmp_path / "again.png"))
    assert call_cli("report", out, "--to", tmp_path / "bone.png", "--window", "bone").returncode == 0
    assert not np.array_equal(imread(out / "report.png"), imread(tmp_path / "bone.png"))
    view = sitk.ReadImage(str(out / "ct_view.nrrd"))
    ct = sitk.ReadImage(str(ct_file))
    assert view.GetSpacing() == ct.GetSpacing() and view.GetDirection() == ct.GetDirection()
    start = ct.TransformPhysicalPointToIndex(view.GetOrigin())
    x, y, z = (slice(a, a + n) for a, n in zip(start, view.GetSize()))
    assert np.array_equal(sitk.GetArrayFromImage(view), sitk.GetArrayFromImage(ct[x, y, z]))
    # an older result: no ct_view.nrrd and its CT moved away -> --ct is asked for; with it, the same picture
    old = tmp_path / "old"
    shutil.copytree(out, old)
    (old / "ct_view.nrrd").unlink()
    expl = json.loads((old / "explanation.json").read_text())
    expl["settings"]["ct"] = str(tmp_path / "gone.nii.gz")
    (old / "explanation.json").write_text(json.dumps(expl))
    r = call_cli("report", old)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--ct" in r.stderr
    assert call_cli("report", old, "--ct", ct_file, "--to", tmp_path / "old.png").returncode == 0
    assert np.array_equal(imread(out / "report.png"), imread(tmp_path / "old.png"))
    r = call_cli("report", tmp_path / "nothing")
    assert r.returncode == 2 and "not a ShapSegExplain result" in r.stderr and "Traceback" not in r.stderr


def test_a_coarse_to_fine_result_says_each_players_first_level_and_its_convergence(explained):
    expl = json.loads((explained["out"] / "explanation.json").read_text())
    roots = {r["coarse"] for r in expl["players"]}
    assert 1 < len(roots) < len(expl["players"]) and all(r["level"] >= 1 for r in expl["players"])
    assert all(r["name"].split(".")[0] == r["coarse"] for r in expl["players"])
    points = expl["convergence"]
    assert len(points) == len(expl["levels"])
    assert [p["coalitions"] for p in points] == [lv["coalitions"] for lv in expl["levels"]]
    assert all(a["tile_forwards"] <= b["tile_forwards"] for a, b in zip(points, points[1:]))


def test_colours_are_centred_and_symmetric():
    from ShapSegExplainLib.colors import phi_opacity
    phi = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    c = phi_colors(phi)
    assert np.allclose(c[2], c[2].mean(), atol=0.03)            # φ = 0: the map's neutral (near-grey) centre
    assert c[4][0] > c[4][2] and c[0][2] > c[0][0]               # positive red, negative blue
    assert np.allclose(c[3], phi_colors(np.array([1.0]), vmax=2.0)[0])
    a = phi_opacity(phi)
    assert a[0] == a[4] and a[1] == a[3] and a[2] < a[3] < a[4]


def test_terminal_progress_shows_phase_coalitions_tiles_and_ratio():
    import io
    from ShapSegExplainLib.run.progress import TerminalProgress, progress_for

    class Tty(io.StringIO):
        def isatty(self):
            return True
    stream = Tty()
    bar = progress_for(stream)
    assert isinstance(bar, TerminalProgress)
    bar({"event": "progress", "phase": "players", "done": 0, "total": 1, "message": "building players"})
    for done in (32, 64):
        bar({"event": "progress", "phase": "shapley", "done": done, "total": 100, "message": "",
             "tile_forwards": 3 * done, "ratio": 0.25})
    bar.close()
    text = stream.getvalue()
    assert "players: building players" in text and "shapley" in text and "64/100" in text
    assert "tile forwards=192" in text and "ratio=0.250" in text
    assert not isinstance(progress_for(io.StringIO()), TerminalProgress)


@pytest.mark.parametrize("levels", [1, 4])
def test_time_limit_and_forward_budget_stop_sampling_with_a_complete_result(ct_file, model_dirs, tmp_path, levels):
    """Both rules are checked before every chunk of coalitions, in the first design too, and the
    chunks shrink near either rule's limit (``Sampler.pace``), so a stop overshoots by about one
    coalition (before the pace: up to 16, here 116 forwards over a budget of 20); the result is written."""
    job = make_job(ct_file, model_dirs["one_fold"], tmp_path / "t", budget=None, levels=levels, time_limit=1e-3,
                   faithfulness_steps=0)
    expl = run_explanation(job)
    assert expl["shapley"]["stop_reason"] == "time_limit"
    assert expl["shapley"]["n_evaluations"] <= 2 + 1 and (tmp_path / "t" / "players.seg.nrrd").is_file()
    phi = np.array([p["phi"] for p in expl["players"]])
    assert abs(phi.sum() - (expl["full_value"] - expl["base_value"])) < 1e-9
    job = make_job(ct_file, model_dirs["one_fold"], tmp_path / "f", budget=None, levels=levels, budget_forwards=20,
                   faithfulness_steps=0)
    expl = run_explanation(job)
    tiles = len(expl["roi"]["tiles"])
    assert expl["shapley"]["stop_reason"] == "forward_budget"
    assert 20 <= expl["stats"]["tile_forwards_sampling"] <= 20 + tiles          # one coalition at most


@pytest.mark.parametrize("field, value", [("tolerance", "x"), ("tolerance", 1.0), ("refine_share", 2),
                                          ("levels", 0), ("refinements", -1), ("budget_forwards", True),
                                          ("proxy_tolerance", 1.5), ("cost_candidates", 0),
                                          ("residual_coalitions", 3), ("residual_coalitions", 6.0)])
def test_cost_settings_are_checked_before_any_work(tmp_path, field, value):
    """The coarse-to-fine, pruning and budget settings of a job file fail in ``check()`` with one line."""
    job = ExplainJob(ct="a.nii.gz", model=str(tmp_path / "no-model"), target="liver", out=str(tmp_path / "o"),
                     roi_point_ras=[1, 2, 3], **{field: value})
    with pytest.raises(ShapSegError) as e:
        run_explanation(job)
    assert e.value.code == "bad_option" and field.replace("_", "-") in e.value.message and repr(value) in e.value.message


def test_a_proxy_run_is_corrected_to_the_exact_game_and_audits_exact_values(ct_file, model_dirs, explained, tmp_path):
    """With a proxy (most tiles frozen) and cost-aware draws: v(∅) and v(N) are the exact game's,
    φ sums to them, every level says how many proxy coalitions it played, and the audit holds
    exact values only (its full coalition is the exact v(N))."""
    ref = explained["expl"]
    expl = run_explanation(make_job(ct_file, model_dirs["one_fold"], tmp_path / "p", proxy_tolerance=0.9,
                                    cost_candidates=4))
    assert expl["shapley"]["proxy_evaluations"] > 0 and "proxy" in expl["shapley"]["estimator"]
    assert sum(level["proxy_coalitions"] > 0 for level in expl["levels"]) >= 1
    assert expl["full_value"] == ref["full_value"] and expl["base_value"] == ref["base_value"]
    phi = np.array([p["phi"] for p in expl["players"]])
    assert abs(phi.sum() - (expl["full_value"] - expl["base_value"])) < 1e-9
    audit = np.load(tmp_path / "p" / "coalitions.npz")
    m = int(audit["n_players"])
    coalitions = np.unpackbits(audit["coalitions"], axis=1)[:, :m].astype(bool)
    assert (audit["values"][coalitions.all(axis=1)] == ref["full_value"]).all()
    assert audit["values"].shape[0] == expl["shapley"]["n_evaluations"]


def test_a_few_exact_coalitions_correct_a_flat_proxy_game(ct_file, model_dirs, explained, tmp_path):
    """``residual_coalitions=6``: the proxy played at the budget, the exact game at ∅, N and two
    complementary pairs only (unbiased KernelSHAP), φ summing to the exact v(N) − v(∅)."""
    ref = explained["expl"]
    expl = run_explanation(make_job(ct_file, model_dirs["one_fold"], tmp_path / "u", levels=1, proxy_tolerance=0.9,
                                    residual_coalitions=6, faithfulness_steps=0))
    shapley = expl["shapley"]
    assert shapley["n_evaluations"] == 6 and shapley["proxy_evaluations"] >= 2 * len(expl["players"]) + 2
    assert "unbiased KernelSHAP on the residual" in shapley["estimator"]
    assert expl["full_value"] == ref["full_value"] and expl["base_value"] == ref["base_value"]
    phi = np.array([p["phi"] for p in expl["players"]])
    assert abs(phi.sum() - (expl["full_value"] - expl["base_value"])) < 1e-9
    audit = np.load(tmp_path / "u" / "coalitions.npz")
    coalitions = np.unpackbits(audit["coalitions"], axis=1)[:, :int(audit["n_players"])].astype(bool)
    assert coalitions.shape[0] == 6 and (coalitions[2::2] == ~coalitions[3::2]).all()      # the pairs
