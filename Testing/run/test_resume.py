"""``--resume``: a run killed with ``kill -9``, or cut short by its time limit, goes on from
its journal and gives φ bitwise equal to an uninterrupted run with the same seed."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import write_job
from ShapSegExplainLib.errors import ShapSegError
from ShapSegExplainLib.run.explain import run_explanation
from ShapSegExplainLib.run.job import read_job
from ShapSegExplainLib.run.journal import Journal, journal_folder, read_records

# 44 flat players, 300 coalitions in chunks of 8: long enough to be killed mid-sampling
LONG = dict(budget=300, spacing_mm=6.0, threshold=1e-9, coalition_batch=8, levels=1)


def phis(result: dict) -> list[float]:
    return [p["phi"] for p in result["players"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, model_dirs):
    folder = tmp_path_factory.mktemp("uninterrupted")
    return run_explanation(read_job(write_job(folder, model_dirs["one_fold"], **LONG)))


def test_the_journal_keeps_whole_records_and_cuts_off_one_a_kill_interrupted(tmp_path):
    job = read_job(write_job(tmp_path, "model"))
    journal = Journal.start(job, resume=False)
    rng = np.random.default_rng(0)
    chunks = [rng.random((k, 11)) < 0.5 for k in (3, 8, 5)]
    spent = iter([0, 0, 0, 5, 5, 5])            # the second chunk costs 5 tile forwards ...
    journal.forwards = lambda: next(spent)
    for i, c in enumerate(chunks):
        # ... and adds two memo entries (a tile's ROI part, keyed by tile and absent players)
        journal.new_entries = lambda i=i: [((3, b"\x00"), torch.zeros(4)), ((4, b"\x07\x01"),
                                           torch.full((2, 3), 1.5, dtype=torch.float16))] if i == 1 else []
        journal.play(c, proxy=i == 1, evaluate=lambda c: c.sum(axis=1) / 7)
    values_file = journal.folder / "values.bin"
    whole = values_file.stat().st_size
    with open(values_file, "ab") as f:
        f.write(b"\x00\x05\x00")                          # a record cut by the kill
    records = read_records(values_file)
    assert values_file.stat().st_size == whole + 3          # reading never changes the file
    assert [(p, c.shape) for p, c, *_ in records] == [(False, (3, 11)), (True, (8, 11)), (False, (5, 11))]
    assert all(np.array_equal(c, x) and np.array_equal(v, x.sum(axis=1) / 7)
               for (_, c, v, *_), x in zip(records, chunks))
    assert [len(e) for *_, e in records] == [0, 2, 0] and records[1][3] == 5
    (tile, key), arr = records[1][4][1]
    assert (tile, key) == (4, b"\x07\x01") and arr.dtype == np.float16 and np.array_equal(arr, np.full((2, 3), 1.5))
    again = Journal.start(job, resume=True)
    assert values_file.stat().st_size == whole              # the resuming owner cuts the cut record off
    assert [len(again.pending[False]), len(again.pending[True])] == [2, 1] and len(again.memo) == 2
    never = lambda c: pytest.fail("a journaled chunk was evaluated again")     # noqa: E731
    assert np.array_equal(again.play(chunks[0], False, never), chunks[0].sum(axis=1) / 7)
    with pytest.raises(ShapSegError, match="other coalitions"):
        again.play(chunks[0], False, never)                                      # not the next one


def test_a_reader_beside_the_writer_never_damages_the_journal(tmp_path):
    """The cause of the flaky resume (issue 43): a poll that saw a record half written cut the
    file, the writer's rest landed after the cut, and the resumed run replayed garbage."""
    job = read_job(write_job(tmp_path, "model"))
    journal = Journal.start(job, resume=False)
    chunks = [np.eye(6, dtype=bool)[i:i + 2] for i in (0, 2, 4)]
    journal.append(chunks[0], False, np.array([1.0, 2.0]))
    path = journal.folder / "values.bin"
    frame = path.read_bytes()
    path.write_bytes(frame + frame[:len(frame) // 2])           # the writer is half-way through record 2
    assert len(read_records(path)) == 1 and path.stat().st_size == len(frame) + len(frame) // 2
    with open(path, "ab") as f:                                  # ... and finishes it
        f.write(frame[len(frame) // 2:])
    journal.append(chunks[2], False, np.array([5.0, 6.0]))
    assert [c.tolist() for _, c, *_ in read_records(path)] == [chunks[0].tolist()] * 2 + [chunks[2].tolist()]


def test_a_damaged_record_ends_the_replay_and_the_rest_is_evaluated_again(tmp_path):
    job = read_job(write_job(tmp_path, "model"))
    journal = Journal.start(job, resume=False)
    coalitions = np.random.default_rng(2).random((9, 7)) < 0.5
    value = lambda c: c.sum(axis=1) / 7                                          # noqa: E731
    for part in (coalitions[:3], coalitions[3:6], coalitions[6:]):
        journal.play(part, False, value)
    path = journal.folder / "values.bin"
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third + third // 2] ^= 0x10                             # one bit of the second record
    path.write_bytes(bytes(data))
    again = Journal.start(job, resume=True)
    evaluated = []
    got = again.play(coalitions, False, lambda c: evaluated.append(len(c)) or value(c))
    assert np.array_equal(got, value(coalitions)) and evaluated == [6] and again.replayed == 3


def test_a_full_disk_while_journaling_is_one_clear_line_and_leaves_no_half_record(tmp_path, monkeypatch):
    import errno
    job = read_job(write_job(tmp_path, "model"))
    journal = Journal.start(job, resume=False)
    journal.append(np.eye(4, dtype=bool)[:2], False, np.array([1.0, 2.0]))
    path = journal.folder / "values.bin"
    size = path.stat().st_size
    real_write = os.write

    def write_then_full(fd, data):            # the kernel takes part of the record, then ENOSPC
        real_write(fd, bytes(data[:5]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "write", write_then_full)
    with pytest.raises(ShapSegError, match="No space left on device.*--resume") as e:
        journal.append(np.eye(4, dtype=bool)[2:], False, np.array([3.0, 4.0]))
    monkeypatch.undo()
    assert e.value.code == "bad_output" and path.stat().st_size == size and len(read_records(path)) == 1


def test_a_damaged_journal_header_is_one_clear_line(tmp_path):
    job = read_job(write_job(tmp_path, "model"))
    Journal.start(job, resume=False)
    (journal_folder(job.out) / "job.json").write_text('{"key": "ab')
    with pytest.raises(ShapSegError, match="damaged") as e:
        Journal.start(job, resume=True)
    assert e.value.code == "bad_resume"


def test_a_replay_may_cut_the_chunks_otherwise_than_the_records(tmp_path):
    """A time limit paces chunks by the clock, so a resumed run may ask for the journaled
    coalitions in other chunks: they are answered coalition by coalition, the rest evaluated."""
    job = read_job(write_job(tmp_path, "model"))
    journal = Journal.start(job, resume=False)
    coalitions = np.random.default_rng(1).random((11, 9)) < 0.5
    value = lambda c: c.sum(axis=1) / 9                                          # noqa: E731
    spent = iter([0, 4, 4, 6])
    journal.forwards = lambda: next(spent)
    for part in (coalitions[:3], coalitions[3:8]):
        journal.play(part, False, value)
    again = Journal.start(job, resume=True)
    evaluated = []
    got = [again.play(coalitions[a:b], False, lambda c: evaluated.append(len(c)) or value(c))
           for a, b in ((0, 2), (2, 7), (7, 11))]
    assert np.array_equal(np.concatenate(got), value(coalitions)) and evaluated == [3]
    assert (again.replayed, again.replayed_forwards) == (8, 6)
    assert [len(r[1]) for r in read_records(journal.folder / "values.bin")] == [3, 5, 3]


# SHAPSEG_RESUME_REPEATS=30: the kill-and-resume 30 times in a row (issue 43's check; one by default)
@pytest.mark.parametrize("attempt", range(int(os.environ.get("SHAPSEG_RESUME_REPEATS", "1"))))
def test_kill_9_mid_sampling_then_resume_gives_bitwise_the_same_phi(tmp_path, model_dirs, uninterrupted, attempt):
    path = write_job(tmp_path, model_dirs["one_fold"], **LONG)
    values = journal_folder(tmp_path / "out") / "values.bin"
    p = subprocess.Popen([sys.executable, "-m", "ShapSegExplainLib.cli", "worker", str(path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and len(read_records(values)) < 6:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL, "the worker finished before it could be killed"
    records = read_records(values)
    done, spent = sum(len(r[1]) for r in records), sum(r[3] for r in records)
    assert 0 < done < uninterrupted["shapley"]["n_evaluations"]
    (tmp_path / f".out.partial-{p.pid}").mkdir()        # what a worker killed while writing leaves
    job = read_job(path)
    job.resume = True
    resumed = run_explanation(job)
    assert phis(resumed) == phis(uninterrupted)                                            # bitwise
    assert resumed["full_value"] == uninterrupted["full_value"] and resumed["base_value"] == uninterrupted["base_value"]
    s, whole = resumed["stats"], uninterrupted["stats"]
    assert s["coalitions_resumed"] == done and s["tile_forwards_resumed"] == spent > 0
    assert resumed["shapley"]["n_evaluations"] == uninterrupted["shapley"]["n_evaluations"]
    # the memo comes back from the journal: no tile forward is spent twice
    assert spent + s["tile_forwards_sampling"] == whole["tile_forwards_sampling"]
    assert sorted(x.name for x in tmp_path.iterdir()) == [".out.lock", "ct.nii.gz", "job.json", "out"]  # no journal, no partial


def test_a_time_limited_result_keeps_its_journal_and_resumes_to_the_full_run(tmp_path, model_dirs, uninterrupted):
    path = write_job(tmp_path, model_dirs["one_fold"], time_limit=0.3, **LONG)
    first = run_explanation(read_job(path))
    assert first["shapley"]["stop_reason"] == "time_limit"
    assert first["shapley"]["n_evaluations"] < uninterrupted["shapley"]["n_evaluations"]
    assert journal_folder(tmp_path / "out").is_dir()
    job = read_job(path)
    job.resume, job.time_limit = True, None
    resumed = run_explanation(job)
    assert phis(resumed) == phis(uninterrupted)
    assert resumed["stats"]["coalitions_resumed"] > 0 and not journal_folder(tmp_path / "out").exists()


def test_resume_needs_the_interrupted_run_of_the_same_settings(tmp_path, model_dirs, monkeypatch):
    path = write_job(tmp_path, model_dirs["one_fold"], resume=True)
    with pytest.raises(ShapSegError, match="no interrupted run") as e:
        run_explanation(read_job(path))
    assert e.value.code == "nothing_to_resume"
    Journal.start(read_job(write_job(tmp_path, model_dirs["one_fold"], seed=1)), resume=False)
    with pytest.raises(ShapSegError, match=r"other settings \(seed\)") as e:
        run_explanation(read_job(write_job(tmp_path, model_dirs["one_fold"], seed=2, resume=True)))
    assert e.value.code == "bad_resume" and not (tmp_path / "out").exists()
    import ShapSegExplainLib
    Journal.start(read_job(write_job(tmp_path, model_dirs["one_fold"], seed=2)), resume=False)
    monkeypatch.setattr(ShapSegExplainLib, "__version__", "0.0.0")      # a release that keys the memo otherwise
    with pytest.raises(ShapSegError, match="another release") as e:
        run_explanation(read_job(write_job(tmp_path, model_dirs["one_fold"], seed=2, resume=True)))
    assert e.value.code == "bad_resume"
