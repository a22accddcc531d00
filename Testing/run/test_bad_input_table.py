"""The bad-input table of docs/usage.md, row by row: each bad input gives exactly one line on stderr,
naming the input, exit code 2, no traceback, and nothing written (no --out, no partial folder).

``ROWS`` is the table: kind -> (the input, a phrase its message must hold). The guide's
table is checked against it, so neither can gain a row the other lacks.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from fixtures.model_folder import ModelSpec, write_model_folder
from helpers import call_cli, run_cli, synthetic_ct

USAGE = Path(__file__).resolve().parents[2] / "docs" / "usage.md"     # where the bad-input table lives

ROWS: dict[str, tuple[str, str]] = {
    "ct_missing": ("--ct names no file", "CT not found"),
    "ct_corrupt": ("--ct is not an image", "cannot read the CT"),
    "ct_2d": ("--ct is a 2D image", "is 2D; a 3D CT is needed"),
    "ct_4d": ("--ct is a 4D image", "is 4D; a 3D CT is needed"),
    "ct_not_hu": ("--ct is not in Hounsfield units (an MR)", "does not look like a CT in Hounsfield units"),
    "ct_spacing": ("--ct has an absurd voxel spacing (a header in metres)", "a CT's lies between"),
    "mask_geometry": ("--roi-mask has another grid than the CT", "differs from the CT's"),
    "mask_empty": ("--roi-mask is empty", "is empty"),
    "roi_outside": ("--roi-box lies outside the CT", "lies outside the CT"),
    "mask_everything": ("--roi-mask covers (nearly) the whole CT", "of the CT; draw it around the finding"),
    "reference_geometry": ("--reference has another grid than the CT", "differs from the CT's"),
    "model_missing": ("--model names no folder", "model folder not found"),
    "model_no_plans": ("--model has no plans.json / dataset.json", "is not an nnU-Net v2 results folder"),
    "model_wrong_fold": ("--folds names a fold the folder lacks", "available folds: [0]"),
    "model_2d": ("--model is a 2D configuration", "ShapSegExplain explains 3D configurations"),
    "model_not_ct": ("--model normalises with something other than CTNormalization", "not CTNormalization"),
    "model_unknown_trainer": ("--model was trained with a trainer class not installed here",
                              "trainer class 'NoSuchTrainer' is not installed"),
    "model_unsafe_checkpoint": ("a checkpoint holding types nnU-Net's do not",
                                "which nnU-Net checkpoints do not; loading it could run code"),
    "unknown_target": ("--target is not one of the model's classes", "unknown target 'pancreas'"),
    "out_read_only": ("--out lies in a folder that cannot be written", "cannot write to"),
    "out_foreign": ("--out is someone's folder (not empty, not a result)", "is not a ShapSegExplain result"),
    "disk_full": ("the disk fills while the result is written", "No space left on device"),
    "budget_zero": ("--budget 0", "budget must be a positive whole number"),
    "budget_negative": ("--budget -5", "budget must be a positive whole number"),
    "job_unknown_field": ("a job file (worker, panel) with an unknown field", "unknown job field(s): spacing"),
    "job_mistyped_field": ("a job file with a field of the wrong type", "job field 'budget' must be int"),
}


class NotNnunet:
    """Something a checkpoint could hold that nnU-Net's never do."""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, model_dirs):
    """The good inputs every row starts from, and the bad ones the rows swap in."""
    d = tmp_path_factory.mktemp("bad_inputs")
    ct = synthetic_ct((20, 36, 36), seed=3)
    files = {"ct": d / "ct.nrrd", "model": model_dirs["one_fold"]}
    sitk.WriteImage(ct, str(files["ct"]))
    (d / "junk.nii.gz").write_bytes(b"junk")
    sitk.WriteImage(synthetic_ct((1, 36, 36))[:, :, 0], str(d / "2d.nrrd"))
    sitk.WriteImage(sitk.JoinSeries([synthetic_ct((8, 10, 10))] * 2), str(d / "4d.nrrd"))
    mr = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 900, (20, 36, 36)).astype(np.float32))
    sitk.WriteImage(mr, str(d / "mr.nrrd"))
    metres = sitk.Image(ct)
    metres.SetSpacing([s / 1000 for s in ct.GetSpacing()])
    sitk.WriteImage(metres, str(d / "metres.nrrd"))
    for name, value, source in (("empty", 0, ct), ("everything", 1, ct), ("other_grid", 1, synthetic_ct((10, 18, 18)))):
        mask = sitk.Image(source.GetSize(), sitk.sitkUInt8) + value
        mask.CopyInformation(source)
        sitk.WriteImage(mask, str(d / f"{name}.nrrd"))
    other_spacing = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    other_spacing.SetSpacing([2 * s for s in ct.GetSpacing()])
    other_spacing.SetOrigin(ct.GetOrigin())
    sitk.WriteImage(other_spacing, str(d / "reference_other_spacing.nrrd"))
    (d / "no_plans").mkdir()
    base = dict(patch_size=(16, 32, 32), spacing=(3.0, 1.5, 1.5), features=(4, 8, 16), seed=1)
    files["not_ct"] = write_model_folder(d / "not_ct", ModelSpec(**base, normalization="ZScoreNormalization"))
    files["trainer"] = write_model_folder(d / "trainer", ModelSpec(**base, trainer_name="NoSuchTrainer"))
    files["model_2d"] = two_d_model(model_dirs["one_fold"], d / "model_2d")
    files["unsafe"] = unsafe_model(model_dirs["one_fold"], d / "unsafe")
    return d, files


def two_d_model(source: Path, folder: Path) -> Path:
    """The 3D folder relabelled as nnU-Net's ``2d`` configuration (a 2D patch)."""
    shutil.copytree(source, folder)
    plans = json.loads((folder / "plans.json").read_text())
    config = plans["configurations"].pop("3d_fullres")
    config.update(patch_size=[32, 32], spacing=[1.5, 1.5], data_identifier="nnUNetPlans_2d")
    plans["configurations"]["2d"] = config
    (folder / "plans.json").write_text(json.dumps(plans))
    ckpt_path = folder / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["init_args"]["configuration"] = "2d"
    torch.save(ckpt, ckpt_path)
    return folder


def unsafe_model(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    ckpt_path = folder / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["extra"] = NotNnunet()
    torch.save(ckpt, ckpt_path)
    return folder


def read_only_parent(tmp: Path) -> Path:
    """A folder where no file can be created: chmod 555, or /sys where root ignores modes."""
    folder = tmp / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return folder
    return Path("/sys")


def explain_argv(inputs, out: Path, **swap) -> list[str]:
    d, files = inputs
    args = {"--ct": files["ct"], "--model": files["model"], "--target": "liver", "--roi-box": "10,10,5,20,20,10",
            "--out": out, "--players": "organ", "--budget": 12, "--levels": 1, "--faithfulness-steps": 0, "--device": "cpu"}
    for k, v in swap.items():
        args[f"--{k.replace('_', '-')}"] = v
    if "--roi-mask" in args:
        del args["--roi-box"]
    return ["explain", *[str(x) for kv in args.items() for x in kv]]


def row_argv(kind: str, inputs, out: Path, tmp: Path, monkeypatch) -> list[str]:
    """The command line of one row (its bad input swapped into good ones)."""
    d, f = inputs
    swaps = {
        "ct_missing": dict(ct=d / "missing.nii.gz"), "ct_corrupt": dict(ct=d / "junk.nii.gz"),
        "ct_2d": dict(ct=d / "2d.nrrd"), "ct_4d": dict(ct=d / "4d.nrrd"), "ct_not_hu": dict(ct=d / "mr.nrrd"),
        "ct_spacing": dict(ct=d / "metres.nrrd"), "mask_geometry": dict(roi_mask=d / "other_grid.nrrd"),
        "mask_empty": dict(roi_mask=d / "empty.nrrd"), "roi_outside": dict(roi_box="200,200,200,210,210,210"),
        "mask_everything": dict(roi_mask=d / "everything.nrrd"),
        "reference_geometry": dict(value="dice", reference=d / "reference_other_spacing.nrrd"),
        "model_missing": dict(model=d / "MISSING"), "model_no_plans": dict(model=d / "no_plans"),
        "model_wrong_fold": dict(folds=3), "model_2d": dict(model=f["model_2d"]),
        "model_not_ct": dict(model=f["not_ct"]), "model_unknown_trainer": dict(model=f["trainer"]),
        "model_unsafe_checkpoint": dict(model=f["unsafe"]), "unknown_target": dict(target="pancreas"),
        "budget_zero": dict(budget=0),
        "budget_negative": dict(budget=-5),
    }
    if kind == "out_read_only":
        out = read_only_parent(tmp) / "result"
    if kind == "out_foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    if kind == "disk_full":
        from ShapSegExplainLib.run import outputs

        def write_csv_on_a_full_disk(path, rows):      # the kernel's own ENOSPC, from /dev/full
            with open("/dev/full", "w") as full:
                full.write("id,name\n" * 1000)
                full.flush()
        monkeypatch.setattr(outputs, "write_csv", write_csv_on_a_full_disk)
    return explain_argv(inputs, out, **swaps.get(kind, {}))


LATE = {"disk_full"}       # found after the work: the log of the phases that ran comes before the error


def assert_one_error_line(stderr: str, needle: str, late: bool = False) -> None:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    log = [ln for ln in lines[:-1] if re.match(r"^\[ *[0-9.]+ s\] [a-z]+: ", ln)]
    assert len(lines) == 1 + (len(log) if late else 0) and len(log) == len(lines) - 1, stderr
    assert lines[-1].startswith("shapseg: error: ") and needle in lines[-1], stderr


def nothing_written(out: Path, keep: tuple[str, ...] = ()) -> bool:
    """No result and nothing beside it but the (released) lock file and ``keep``."""
    parent = out.parent
    names = [p.name for p in parent.iterdir()] if parent.is_dir() else []
    leftovers = [n for n in names if n.startswith(f".{out.name}.") and n not in (f".{out.name}.lock", *keep)]
    return not out.exists() and not leftovers


def named_input(kind: str, argv: list[str]) -> str:
    """What the message must name: the file or folder swapped in, else the option's value."""
    option = {"ct": "--ct", "mask": "--roi-mask", "reference": "--reference", "out": "--out"}.get(kind.split("_")[0])
    if kind.startswith("model") and kind != "model_wrong_fold":
        option = "--model"
    if option in argv:
        value = argv[argv.index(option) + 1]
        return str(Path(value).parent) if kind == "out_read_only" else value
    return {"roi_outside": "200", "model_wrong_fold": "fold_3", "unknown_target": "pancreas", "disk_full": "result",
            "budget_zero": "budget", "budget_negative": "budget", "reference_geometry": "reference"}[kind]


EXPLAIN_ROWS = [k for k in ROWS if not k.startswith("job_")]


@pytest.mark.parametrize("kind", EXPLAIN_ROWS)
def test_shapseg_explain_row(kind, inputs, tmp_path, monkeypatch):
    out = tmp_path / "result"
    argv = row_argv(kind, inputs, out, tmp_path, monkeypatch)
    r = call_cli(*argv)
    assert r.returncode == 2, (kind, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert_one_error_line(r.stderr, ROWS[kind][1], late=kind in LATE)
    assert named_input(kind, argv) in r.stderr, (kind, r.stderr)
    if kind == "out_foreign":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]          # left as it was
    elif kind == "out_read_only":
        target = Path(argv[argv.index("--out") + 1])
        assert not target.exists()
    elif kind == "disk_full":         # the values are kept: free space, then --resume (no tile forward again)
        assert not out.exists() and "--resume" in r.stderr
        assert nothing_written(out, keep=(".result.journal",)), list(out.parent.iterdir())
    else:
        assert nothing_written(out), list(out.parent.iterdir())


@pytest.mark.parametrize("kind,field", [("job_unknown_field", {"spacing": 3}),
                                        ("job_mistyped_field", {"budget": "ten"})])
def test_worker_job_file_row(kind, field, inputs, tmp_path):
    d, f = inputs
    out = tmp_path / "result"
    job = {"ct": str(f["ct"]), "model": str(f["model"]), "target": "liver", "out": str(out),
           "roi_box": [10, 10, 5, 20, 20, 10], **field}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    r = run_cli("worker", path)
    assert r.returncode == 2, r.stderr
    assert_one_error_line(r.stderr, ROWS[kind][1])
    assert str(path) in r.stderr                                                  # names the job file
    events = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert events[-1]["event"] == "error" and ROWS[kind][1] in events[-1]["message"]
    assert nothing_written(out)


def test_the_usage_guides_table_is_this_table():
    text = USAGE.read_text()
    section = text.split("### Bad input", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z_0-9]+)` \| (.+?) \| (.+?) \|$", section, re.M)
    assert [k for k, _, _ in rows] == list(ROWS) and len(rows) >= 20
    for kind, what, message in rows:
        assert ROWS[kind][1] in message, kind


def test_progress_keeps_the_input_phases_off_stderr_until_the_inputs_are_accepted():
    import io

    from ShapSegExplainLib.run.progress import LogProgress, TerminalProgress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    log = io.StringIO()
    p = LogProgress(log)
    for phase in ("load", "prepare"):
        p({"event": "progress", "phase": phase, "message": phase})
    p.close()                                                                    # an input was refused
    assert log.getvalue() == ""
    p = LogProgress(log)
    phases = ("load", "prepare", "roi", "players", "shapley")
    for phase in phases:
        p({"event": "progress", "phase": phase, "message": phase})
        assert log.getvalue().count("\n") == (5 if phase == "shapley" else 0)    # held until the inputs pass
    assert [ln.split("] ")[1] for ln in log.getvalue().splitlines()] == [f"{x}: {x}" for x in phases]
    tty = Tty()
    t = TerminalProgress(tty)
    t({"event": "progress", "phase": "load", "message": "loading"})
    t.close()
    shown = re.sub(r".*\r", "", tty.getvalue().replace("\x1b[K", ""))            # what the terminal keeps
    assert "loading" in tty.getvalue() and shown.strip() == ""
    assert os.linesep not in tty.getvalue()
