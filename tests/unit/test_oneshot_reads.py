"""One-shot commands and bad files: no retry sleep for a file nobody is rewriting, bounded
nesting in the JSON readers, a journal that is not a regular file refused with a word."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kata_top import boundedjson
from kata_top.collectors import state
from tests.helpers import ROOT

EVENT = {"schema": "kata-top/event/1", "at": 1795422364.0, "kind": "sandbox-appeared",
         "severity": "info", "summary": "default/web-0: sandbox appeared (running)"}


def _corrupt_tree(root: Path, n: int, age_s: float) -> list[Path]:
    paths = []
    for i in range(n):
        d = root / "vc" / "sbs" / f"{i:064x}"
        d.mkdir(parents=True)
        p = d / "persist.json"
        p.write_text('{"state": {"state": "running"' if i % 2 else "")
        os.utime(p, (time.time() - age_s, time.time() - age_s))
        paths.append(p)
    return paths


def test_a_corrupt_file_nobody_rewrites_costs_no_sleep(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(state.time, "sleep", sleeps.append)
    for p in _corrupt_tree(tmp_path / "old", 300, age_s=60):
        rec = state.read_state_file(p.parent.name, str(p), "go")
        assert rec.error and rec.error.startswith("corrupt state file")
    assert sleeps == []
    # one written just now may be mid-rewrite: that one is read again
    fresh = _corrupt_tree(tmp_path / "new", 1, age_s=0)[0]
    assert state.read_state_file(fresh.parent.name, str(fresh), "go").error
    assert len(sleeps) == 2


def test_a_file_rewritten_while_read_is_read_again(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    p = _corrupt_tree(tmp_path, 1, age_s=60)[0]

    def kata_finishes_writing(_s: float) -> None:
        p.write_text(json.dumps({"state": {"state": "running"}}))

    monkeypatch.setattr(state.time, "sleep", kata_finishes_writing)
    real_read = state.read_file

    def read_then_rewrite(path: str, limit: int) -> bytes:
        data = real_read(path, limit)
        with open(path, "a") as fh:  # the file changes under the reader
            fh.write(" ")
        return data

    monkeypatch.setattr(state, "read_file", read_then_rewrite)
    rec = state.read_state_file(p.parent.name, str(p), "go")
    assert rec.error is None  # the second read found it whole


@pytest.mark.parametrize("cmd", ["snapshot", "check"])
def test_300_corrupt_state_files_do_not_stall_a_one_shot_command(tmp_path: Path,
                                                                 cmd: str) -> None:
    _corrupt_tree(tmp_path, 300, age_s=60)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kata_top", cmd, "--run-root", str(tmp_path),
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)
    elapsed = time.monotonic() - started
    assert proc.stdout.count("corrupt state file") >= 300 or cmd == "check", proc.stderr
    assert "Traceback" not in proc.stderr
    # ~18 s of retry sleeps before (300 × 61 ms); `check` sleeps 0.5 s between its two
    # collections on purpose. A generous bound: the machine is shared.
    assert elapsed < 6, elapsed


def _events(journal: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kata_top", "events", "--journal",
                           str(journal)], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)


def test_a_deeply_nested_journal_line_is_skipped(tmp_path: Path) -> None:
    journal = tmp_path / "events.ndjson"
    journal.write_bytes(b"[" * 100_000 + b"\n" + b'{"a":' * 50_000 + b"\n"
                        + json.dumps(EVENT).encode() + b"\n")
    proc = _events(journal)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "sandbox appeared" in proc.stdout


def test_a_journal_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.ndjson"
    real.write_text(json.dumps(EVENT) + "\n")
    fifo, link, binary = tmp_path / "fifo", tmp_path / "link", tmp_path / "binary"
    os.mkfifo(fifo)
    link.symlink_to(real)
    binary.write_bytes(bytes(range(256)) * 64)
    for path, words in ((fifo, "is a FIFO"), (link, "symlink"),
                        (binary, "not a kata-top journal")):
        started = time.monotonic()
        proc = _events(path)
        assert time.monotonic() - started < 20  # a FIFO is never opened blocking
        assert proc.returncode == 2, (path, proc.stdout, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=20)


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_bounded_loads_is_json_loads_for_shallow_documents(value: object) -> None:
    text = json.dumps(value)
    assert boundedjson.loads(text) == json.loads(text)
    assert boundedjson.loads(text.encode()) == json.loads(text)


@given(st.integers(min_value=1, max_value=3000), st.sampled_from(["[", '{"k":', '["[",']))
@settings(max_examples=50, deadline=None)
def test_depth_past_the_bound_is_a_value_error(depth: int, opener: str) -> None:
    closer = {"[": "]", '{"k":': "}", '["[",': "]"}[opener]
    doc = opener * depth + "0" + closer * depth
    if depth <= boundedjson.MAX_DEPTH:
        assert boundedjson.loads(doc) is not None
    else:
        with pytest.raises(ValueError, match="nested"):
            boundedjson.loads(doc)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_a_value_or_a_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        boundedjson.loads(data)
