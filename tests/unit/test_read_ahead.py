"""collectors/read_ahead.py: forked helpers read the later shares of a one-shot collection.
Real forks and pipes; the reads are stand-ins, so every way a helper can fail is tried."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time

import pytest

from kata_top.collectors import read_ahead
from kata_top.collectors.read_ahead import ReadAhead, workers_for
from tests.helpers import child_pids

JOBS = [(f"/ns/{i}", i) for i in range(12)]


def _read(path: str, key: int) -> tuple[int, str, int]:
    if key == 7:
        raise FileNotFoundError(errno.ENOENT, f"network namespace {path} is gone")
    return key, path, os.getpid()


def test_helpers_answer_the_later_shares_and_raise_what_their_read_raised() -> None:
    before = child_pids()
    ahead: ReadAhead[int, tuple[int, str, int]] = ReadAhead(JOBS, 3, _read, lambda: None)
    try:
        # the caller's share (the first four): nobody read them
        assert [ahead.take(k) for _p, k in JOBS[:4]] == [None] * 4
        got = {k: ahead.take(k) for _p, k in JOBS[4:] if k != 7}
        for k, value in got.items():
            assert value is not None and value[:2] == (k, f"/ns/{k}")
            assert value[2] != os.getpid()  # read in another process
        assert len({v[2] for v in got.values() if v}) == 2  # two helpers
        with pytest.raises(FileNotFoundError) as exc:
            ahead.take(7)
        assert exc.value.errno == errno.ENOENT and "/ns/7" in str(exc.value)
        assert ahead.take(99) is None
    finally:
        ahead.close()
    assert child_pids() == before  # reaped


def test_a_helper_past_its_deadline_is_killed_and_its_share_left_to_the_caller(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_ahead, "DEADLINE_BASE_S", 0.3)
    monkeypatch.setattr(read_ahead, "DEADLINE_PER_JOB_S", 0.0)
    before = child_pids()

    def stuck(path: str, key: int) -> int:
        time.sleep(60)
        return key

    ahead: ReadAhead[int, int] = ReadAhead(JOBS, 2, stuck, lambda: None)
    try:
        t0 = time.monotonic()
        assert ahead.take(11) is None
        assert time.monotonic() - t0 < 5
        assert child_pids() == before
    finally:
        ahead.close()


def test_a_helper_that_dies_leaves_its_share_to_the_caller() -> None:
    def dies(path: str, key: int) -> int:
        os._exit(3)

    ahead: ReadAhead[int, int] = ReadAhead(JOBS, 2, dies, lambda: None)
    try:
        assert ahead.take(11) is None and ahead.take(6) is None
    finally:
        ahead.close()


def test_closing_before_the_answers_ends_every_helper() -> None:
    before = child_pids()

    def slow(path: str, key: int) -> int:
        time.sleep(60)
        return key

    ahead: ReadAhead[int, int] = ReadAhead(JOBS, 4, slow, lambda: None)
    assert len(child_pids() - before) == 3
    ahead.close()
    assert child_pids() == before


def test_helpers_start_from_in_child_and_write_nothing_but_their_pipe(
        capfd: pytest.CaptureFixture[str]) -> None:
    def in_child() -> None:
        os.environ["KT_HELPER"] = "1"  # only the helper's copy

    def read(path: str, key: int) -> str | None:
        return os.environ.get("KT_HELPER")

    ahead: ReadAhead[int, str | None] = ReadAhead(JOBS, 2, read, in_child)
    try:
        assert ahead.take(11) == "1"
        assert "KT_HELPER" not in os.environ
    finally:
        ahead.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_how_many_processes() -> None:
    # small nodes: not worth a fork; an explicit number is kept within the jobs
    assert workers_for(read_ahead.MIN_SHARE) == 1
    assert workers_for(5, wanted=8) == 5
    assert workers_for(1000, wanted=1) == 1
    assert 1 <= workers_for(1000) <= min(read_ahead.MAX_WORKERS, 1 + read_ahead.spare_cpus())
    assert read_ahead.spare_cpus() < read_ahead.cpu_budget()  # never more than ours
    # another thread in the process: never fork (it would not be copied, its locks would)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert workers_for(1000) == 1 and workers_for(1000, wanted=4) == 1
    finally:
        stop.set()
        t.join()


def test_the_engine_spells_the_share_as_the_helpers_do() -> None:
    from kata_top.engine import READ_AHEAD_MIN_SHARE

    assert READ_AHEAD_MIN_SHARE == read_ahead.MIN_SHARE


def test_too_few_jobs_for_the_workers_fork_what_there_is() -> None:
    before = child_pids()
    for jobs, workers in ((JOBS[:1], 2), (JOBS[:2], 4), ([], 3)):
        ahead: ReadAhead[int, tuple[int, str, int]] = ReadAhead(jobs, workers, _read,
                                                                lambda: None)
        try:
            taken = [ahead.take(k) for _p, k in jobs]
            assert taken[:1] == [None][:len(jobs)]  # the first is always the caller's
        finally:
            ahead.close()
    assert child_pids() == before


def test_an_answer_written_before_the_deadline_is_read_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller may take longer over its own share than a helper over its: what the helper
    wrote in time is still taken."""
    monkeypatch.setattr(read_ahead, "DEADLINE_BASE_S", 0.2)
    monkeypatch.setattr(read_ahead, "DEADLINE_PER_JOB_S", 0.0)
    ahead: ReadAhead[int, tuple[int, str, int]] = ReadAhead(JOBS, 2, _read, lambda: None)
    try:
        time.sleep(0.6)  # the caller's own share
        got = ahead.take(11)
        assert got is not None and got[0] == 11
    finally:
        ahead.close()


CALLER = """
import os, sys, time
sys.path.insert(0, {root!r})
from kata_top.collectors.read_ahead import ReadAhead

def slow(path, key):
    time.sleep(30)
    return key

ahead = ReadAhead([("a", 1), ("b", 2)], 2, slow, lambda: None)
print(" ".join(str(pid) for pid in ahead.helper_pids), flush=True)
time.sleep(30)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # dead, not yet reaped
    except FileNotFoundError:
        return True


def test_a_helper_dies_with_its_caller() -> None:
    """Its caller killed alone (SIGKILL: no cleanup of its own runs), the helper does not
    read on: the kernel kills it."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    caller = subprocess.Popen([sys.executable, "-c", CALLER.format(root=ROOT)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert caller.stdout is not None
        helpers = [int(p) for p in caller.stdout.readline().split()]
        assert len(helpers) == 1 and not _gone(helpers[0])
    finally:
        caller.kill()  # our own child, by its pid
        caller.wait()
    deadline = time.monotonic() + 10  # a bound for a hang, not a timing claim
    while not _gone(helpers[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = not _gone(helpers[0])
    if alive:
        os.kill(helpers[0], signal.SIGKILL)  # the test's own grandchild, by its pid
    assert not alive
