"""`--replay`'s recording: lines indexed at open, each snapshot built when shown, and the
same snapshots (and the same end at a damaged line) as reading the whole file up front."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kata_top.formats import recording
from kata_top.formats.jsonin import RecordingError, decode
from kata_top.formats.recording import load_recording, open_recording
from kata_top.model import Snapshot
from kata_top.sources.replay import ReplaySource
from tests.helpers import ROOT

with open(os.path.join(ROOT, "tests", "data", "demo.ndjson"), "rb") as _fh:
    LINES = [line for line in _fh if line.strip()]


def reference_load(path: str) -> tuple[list[Snapshot], str | None]:
    """The reading recordings had before they were indexed: every line built in turn up to
    the first damaged one. Kept as the oracle of what a recording plays."""
    from kata_top.collectors.safeopen import open_regular

    snaps: list[Snapshot] = []
    try:
        fh = open_regular(path)
    except OSError as exc:
        raise RecordingError(f"cannot open {path}: {exc.strerror or exc}") from exc
    with fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                snaps.append(decode(raw))
            except RecordingError as exc:
                if not snaps:
                    raise RecordingError(f"{path} is not a kata-top recording (line {n}: "
                                         f"{str(exc)[:120]}); make one with "
                                         "`kata-top snapshot --watch 1 > FILE`") from exc
                return snaps, f"recording ends early: line {n} is cut off or damaged"
    if not snaps:
        raise RecordingError(f"{path} is empty: no snapshots to replay")
    return snaps, None


def _write(tmp_path: Any, name: str, data: bytes) -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def test_a_recording_plays_the_snapshots_loading_it_whole_gives(tmp_path: Any) -> None:
    path = _write(tmp_path, "rec.ndjson", b"\n".join(LINES * 4).replace(b"\n\n", b"\n \n"))
    rec = open_recording(path)
    whole, warning = reference_load(path)
    assert warning is None and rec.warning is None and load_recording(path) == (whole, None)
    assert len(rec) == len(whole) == 4 * len(LINES)
    assert list(rec) == whole
    assert rec[-1] == whole[-1] and rec[1:3] == whole[1:3]
    rec.close()


def test_only_a_few_built_snapshots_are_kept(tmp_path: Any) -> None:
    path = _write(tmp_path, "rec.ndjson", b"".join(LINES * 10))
    rec = open_recording(path)
    second = rec[1]
    for i in range(len(rec)):
        rec[i]
    assert len(rec._built) <= recording.KEPT
    assert rec[1] == second and rec[1] is not second  # built again, from the file
    assert rec[0] is rec[0]  # the first is kept: a recording always has it
    rec.close()


def test_a_cut_off_last_line_is_said_at_open(tmp_path: Any) -> None:
    data = b"".join(LINES) + LINES[0][: len(LINES[0]) // 2]
    rec = open_recording(_write(tmp_path, "cut.ndjson", data))
    assert len(rec) == len(LINES)
    assert rec.warning and f"line {len(LINES) + 1} is cut off" in rec.warning
    rec.close()


def test_a_damaged_line_inside_ends_the_replay_there(tmp_path: Any) -> None:
    """Found when first shown, as loading the whole file found it: what came before plays,
    the position never points past the end."""
    data = LINES[0] + LINES[1] + b'{"schema": "kata-top/snapshot/1", "taken_at": "x"}\n' \
        + LINES[2] + LINES[0]
    path = _write(tmp_path, "damaged.ndjson", data)
    whole, warning = reference_load(path)
    rec = open_recording(path)
    assert rec.warning is None and len(rec) == 5  # the last line is whole
    source = ReplaySource(rec)
    shown = [source.next() for _ in range(5)]
    assert shown == [whole[0], whole[1], whole[1], whole[1], whole[1]]
    assert len(rec) == len(whole) == 2 and source.position() == "2/2"
    assert rec.warning is not None and warning is not None and "line 3" in rec.warning
    assert source.seek(-10) == whole[0] and source.seek(10) == whole[1]
    source.close()


def test_what_is_no_recording_is_refused_at_open(tmp_path: Any) -> None:
    with pytest.raises(RecordingError, match="not a kata-top recording"):
        open_recording(_write(tmp_path, "hello.ndjson", b"hello\n" + LINES[0]))
    with pytest.raises(RecordingError, match="empty"):
        open_recording(_write(tmp_path, "blank.ndjson", b"\n  \n"))
    with pytest.raises(RecordingError, match="cannot open"):
        open_recording(os.path.join(str(tmp_path), "missing.ndjson"))
    os.mkfifo(os.path.join(str(tmp_path), "fifo"))
    with pytest.raises(RecordingError, match="FIFO"):  # refused, never opened blocking
        open_recording(os.path.join(str(tmp_path), "fifo"))


LINE_KINDS = st.sampled_from(LINES) | st.binary(max_size=40).map(lambda b: b + b"\n") \
    | st.sampled_from([b"\n", b"  \n", b"{}\n", b"[" * 5000 + b"\n", b'{"schema": "\xff"}\n'])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(LINE_KINDS, min_size=0, max_size=8), st.booleans())
def test_any_file_replays_what_loading_it_whole_loads(tmp_path: Any, lines: list[bytes],
                                                      cut: bool) -> None:
    data = b"".join(lines)
    if cut and data:
        data = data[:-1 - len(data) // 3]
    path = _write(tmp_path, "any.ndjson", data)
    try:
        whole, warning = reference_load(path)
    except RecordingError as exc:
        with pytest.raises(RecordingError) as got:
            open_recording(path)
        assert str(got.value) == str(exc)
        return
    rec = open_recording(path)
    played = list(rec)  # builds every line: a damaged one ends it
    assert played == whole
    assert (rec.warning is None) == (warning is None)
    if warning:
        assert rec.warning is not None
        assert rec.warning.split(";")[0] == warning  # the same line named
    rec.close()
    loaded, loaded_warning = load_recording(path)
    assert loaded == whole and loaded_warning == rec.warning


def test_the_dashboard_replays_through_a_recording_it_closes(tmp_path: Any) -> None:
    from kata_top.cli.dashboard import _source
    from kata_top.cli.main import build_parser
    from kata_top.formats.recording import Recording
    from kata_top.settings import Settings

    path = _write(tmp_path, "cut.ndjson", b"".join(LINES) + LINES[0][:100])
    argv = ["--replay", path]
    src, warning = _source(build_parser(argv).parse_args(argv), Settings())
    assert isinstance(src, ReplaySource) and isinstance(src.snapshots, Recording)
    assert warning is not None and "cut off" in warning  # shown on the first screen
    assert src.next() == reference_load(path)[0][0]
    src.close()
    assert src.snapshots._fh.closed


def test_a_closed_recording_is_not_taken_for_a_damaged_one(tmp_path: Any) -> None:
    rec = open_recording(_write(tmp_path, "rec.ndjson", b"".join(LINES)))
    rec.close()
    with pytest.raises(ValueError, match="closed"):
        rec[1]
    assert rec.warning is None and len(rec) == len(LINES)
