"""One writer per ``--out`` (``run.lock``) and a previous result never lost to a kill inside
``commit``."""
import subprocess
import sys
import textwrap

import pytest

from helpers import call_cli, write_job
from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.run.explain import run_explanation
from ShapSegExplainLib.run.job import read_job
from ShapSegExplainLib.run.lock import holding, lock_path
from ShapSegExplainLib.run.outputs import OutputFolder


def hold_in_another_process(out):
    """A process that holds ``out``'s lock until its stdin closes (a run in progress)."""
    code = textwrap.dedent(f"""
        import sys
        from ShapSegExplainLib.run.lock import holding
        with holding({str(out)!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_run_on_the_same_out_stops_with_one_line_and_writes_nothing(tmp_path, model_dirs):
    path = write_job(tmp_path, model_dirs["one_fold"])
    holder = hold_in_another_process(tmp_path / "out")
    try:
        with pytest.raises(ShapSegError, match=rf"another run is writing .*process {holder.pid}") as e:
            run_explanation(read_job(path))
        assert e.value.code == "busy"
        r = call_cli("explain", "--ct", tmp_path / "ct.nii.gz", "--model", model_dirs["one_fold"], "--target", "1",
                     "--roi-box", "14,14,8,20,20,11", "--players", "organ", "--out", tmp_path / "out")
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
            "shapseg: error: another run is writing"), r.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "ct.nii.gz", "job.json"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    with holding(tmp_path / "out"):            # released when its holder ends (a kill -9 too: the kernel's flock)
        assert lock_path(tmp_path / "out").read_text().split()[0].isdigit()
    assert lock_path(tmp_path / "out").read_text() == ""


def test_a_kill_between_commits_two_renames_gives_the_previous_result_back(tmp_path):
    out = tmp_path / "result"
    old = tmp_path / ".result.old-999999"            # a pid no process has: the killed run's
    old.mkdir()
    (old / "explanation.json").write_text("{}")
    OutputFolder(out)
    assert (out / "explanation.json").is_file() and not old.exists()
    stale = tmp_path / ".result.old-999998"
    stale.mkdir()
    OutputFolder(out)                               # a result is there: the stale copy is only removed
    assert not stale.exists() and (out / "explanation.json").is_file()
