"""The module's process runner: events and log lines arrive without blocking, a crash becomes
a clear error, and cancel stops the worker and every process it started within a second."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from ShapSegExplainLib.panel.worker_events import RunState
from ShapSegExplainLib.panel.worker_process import WorkerProcess, package_root, stop_process_tree, worker_command
from slicer_helpers import poll_until

FAKE_WORKER = r"""
import json, sys, time
def emit(e, end="\n"):
    sys.stdout.write(json.dumps(e) + end); sys.stdout.flush()
emit({"event": "started"})
sys.stderr.write("a library says hello\rprogress 50%\n"); sys.stderr.flush()
line = json.dumps({"event": "progress", "phase": "shapley", "done": 3, "total": 10, "message": "3 coalitions"})
sys.stdout.write(line[:17]); sys.stdout.flush(); time.sleep(0.2)      # half a line, then the rest
sys.stdout.write(line[17:] + "\n"); sys.stdout.flush()
print("not an event")
sys.stdout.flush()
if sys.argv[1] == "ok":
    emit({"event": "result", "out": "somewhere"})
else:
    sys.exit(3)
"""

TREE = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    "print(g.pid, flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
grandchild = child.stdout.readline().strip()
print('{"event": "tree", "pids": [%d, %s]}' % (child.pid, grandchild), flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_events_logs_and_partial_lines_arrive_in_order():
    w = WorkerProcess([sys.executable, "-c", FAKE_WORKER, "ok"]).start()
    state = RunState()
    events = poll_until(w, state, lambda seen: False, timeout=30)
    kinds = [e["event"] for e in events]
    assert [k for k in kinds if k != "log"] == ["started", "progress", "result"]
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert "not an event" in logs and "a library says hello" in logs and "progress 50%" in logs
    assert w.finished and w.returncode == 0 and state.outcome == "result"
    assert state.log and state.done == state.total


def test_a_worker_that_dies_without_a_result_becomes_a_clear_error():
    w = WorkerProcess([sys.executable, "-c", FAKE_WORKER, "crash"]).start()
    state = RunState()
    events = poll_until(w, state, lambda seen: False, timeout=30)
    assert events[-1]["event"] == "error" and events[-1]["code"] == "worker_crashed"
    assert "exit code 3" in events[-1]["message"] and state.outcome == "error"


def test_a_worker_that_cannot_start_is_an_error_event():
    w = WorkerProcess(["/nonexistent/PythonSlicer", "-m", "x"]).start()
    events = w.poll()
    assert w.finished and events[-1]["event"] == "error" and events[-1]["code"] == "worker_not_started"


ONE_EVENT_THEN_WAIT = r"""
import json, sys, time
sys.stdout.write(json.dumps({"event": "started"}) + "\n"); sys.stdout.flush()
open(sys.argv[1], "w").close()          # the event is written: the test may look
time.sleep(30)
"""


def test_an_event_reaches_the_next_poll_without_a_reader_thread(tmp_path):
    """Slicer runs Python threads only while its main thread runs Python, so the reader uses
    none: what the worker has written is in the very next poll (one timer tick)."""
    threads = threading.active_count()
    w = WorkerProcess([sys.executable, "-c", ONE_EVENT_THEN_WAIT, str(tmp_path / "written")]).start()
    assert threading.active_count() == threads
    deadline = time.monotonic() + 30
    while not (tmp_path / "written").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e["event"] for e in w.poll()] == ["started"]
    w.cancel()
    w.poll()
    assert w.finished and w._folder is None          # its output files are gone with it


def test_poll_never_blocks():
    w = WorkerProcess([sys.executable, "-c", "import time; time.sleep(5)"]).start()
    t0 = time.perf_counter()
    for _ in range(20):
        assert w.poll() == []
    assert time.perf_counter() - t0 < 0.2
    assert w.cancel() < 1.0 and not w.running


@pytest.mark.parametrize("with_psutil", [True, False])
def test_cancel_stops_the_whole_process_tree_within_a_second(monkeypatch, with_psutil):
    w = WorkerProcess([sys.executable, "-c", TREE]).start()
    state = RunState()
    events = poll_until(w, state, lambda seen: any(e.get("event") == "tree" for e in seen), timeout=30)
    pids = [w.pid] + next(e for e in events if e.get("event") == "tree")["pids"]
    assert all(alive(p) for p in pids)
    if not with_psutil:
        if os.name == "nt":
            pytest.skip("the fallback on Windows is taskkill")
        monkeypatch.setitem(sys.modules, "psutil", None)       # import psutil now fails
    seconds = w.cancel()
    monkeypatch.undo()
    assert seconds < 1.0, seconds
    time.sleep(0.1)
    assert not any(alive(p) for p in pids), [p for p in pids if alive(p)]


def test_stop_of_an_ended_process_is_harmless():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    stop_process_tree(p)
    assert p.returncode == 0


def test_worker_runs_from_the_package_folder():
    out = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, ShapSegExplainLib as m; print(json.dumps(m.__file__))"],
        cwd=package_root(), capture_output=True, text=True, check=True).stdout)
    assert out.startswith(str(package_root()))
    assert worker_command("/opt/Slicer/bin/PythonSlicer", "/tmp/run/job.json") == \
        ["/opt/Slicer/bin/PythonSlicer", "-m", "ShapSegExplainLib.cli", "worker", "/tmp/run/job.json"]


def test_cancelling_the_real_worker_mid_run_leaves_nothing(tmp_path, model_dirs):
    from helpers import write_job       # torch: imported here, so the rest also runs in Slicer's Python (no torch)
    job = write_job(tmp_path, model_dirs["one_fold"], budget=600, coalition_batch=8,
                    preview=str(tmp_path / "preview.nrrd"))
    threads = threading.active_count()
    w = WorkerProcess(worker_command(sys.executable, job), cwd=package_root()).start()
    state = RunState()
    events = poll_until(w, state, lambda seen: any(e["event"] == "partial" for e in seen), timeout=300)
    assert threading.active_count() == threads        # the real worker's events came without a reader thread
    players = next(e for e in events if e["event"] == "players")
    assert players["preview"] == str(tmp_path / "preview.nrrd") and os.path.isfile(players["preview"])
    assert state.phi is not None and len(state.phi) == len(players["players"])
    seconds = w.cancel()
    assert seconds < 1.0, seconds
    assert w.returncode == 143                       # the worker's own SIGTERM exit: it cleaned up
    rest = poll_until(w, state, lambda seen: False, timeout=10)
    assert state.outcome == "cancelled", [e["event"] for e in rest]
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


ORPHANING_PARENT = r"""
import subprocess, sys, time
log = open(sys.argv[2], "w")      # events to a file: the worker never notices a broken pipe
w = subprocess.Popen([sys.executable, "-m", "ShapSegExplainLib.cli", "worker", sys.argv[1]],
                     stdout=log, stderr=subprocess.DEVNULL)
while '"partial"' not in open(sys.argv[2]).read():
    time.sleep(0.05)
print(w.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(os.name == "nt", reason="the parent watch is POSIX; on Windows the module kills the tree")
def test_a_worker_whose_parent_dies_stops_and_cleans_up(tmp_path, model_dirs):
    """A GUI that crashes or is killed must not leave a worker computing for nobody."""
    import signal

    from helpers import write_job
    job = write_job(tmp_path, model_dirs["one_fold"], budget=600, coalition_batch=8)
    events = tmp_path / "events.jsonl"
    parent = subprocess.Popen([sys.executable, "-c", ORPHANING_PARENT, str(job), str(events)],
                              stdout=subprocess.PIPE, text=True)
    worker_pid = int(parent.stdout.readline())
    assert alive(worker_pid)
    os.kill(parent.pid, signal.SIGKILL)                 # the GUI dies without cancelling
    parent.wait()
    deadline = time.monotonic() + 5.0
    while alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker_pid), "the orphaned worker kept running"
    assert json.loads(events.read_text().splitlines()[-1])["event"] == "cancelled"
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
