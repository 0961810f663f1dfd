"""The log file: opened by the first record when nobody asked for one, at once when asked."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from kata_top import logs


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for h in root.handlers:
            if h not in handlers:
                h.close()
        root.handlers[:], root.level = handlers, level


def test_default_log_file_appears_with_the_first_record(tmp_path: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = os.path.join(str(tmp_path), "state", "kata-top.log")
    monkeypatch.setattr(logs, "default_log_path", lambda: target)
    assert logs.setup_logging() == target
    assert not os.path.exists(target)  # nothing logged, nothing made
    logging.getLogger("kata_top.test").warning("a sandbox failed: %s", "namespace gone")
    with open(target) as fh:
        assert "WARNING kata_top.test: a sandbox failed: namespace gone" in fh.read()


def test_unwritable_default_log_is_silent(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    blocker = os.path.join(str(tmp_path), "file")
    open(blocker, "w").close()
    monkeypatch.setattr(logs, "default_log_path", lambda: os.path.join(blocker, "x.log"))
    logs.setup_logging()
    logging.getLogger("kata_top.test").warning("nobody asked for a log file")
    assert capsys.readouterr().err == ""


def test_default_log_that_fails_at_the_first_record_is_dropped_silently(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "kata-top.log"
    target.mkdir()  # the directory exists; the file cannot be opened when the record comes
    monkeypatch.setattr(logs, "default_log_path", lambda: str(target))
    assert logs.setup_logging() == str(target)
    for _ in range(3):
        logging.getLogger("kata_top.test").warning("nobody asked for a log file")
    assert capsys.readouterr().err == ""


def test_explicit_unwritable_log_file_says_so_at_once(tmp_path: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    blocker = os.path.join(str(tmp_path), "file")
    open(blocker, "w").close()
    assert logs.setup_logging(os.path.join(blocker, "x.log")) is None
    assert "not logging to" in capsys.readouterr().err


def test_a_deferred_setup_imports_logging_only_when_something_logs(tmp_path: Any) -> None:
    """One-shot commands (snapshot, check) defer the setup: `logging` is not imported at
    start, and the first record through get_logger still lands in the log file."""
    import json
    import subprocess
    import sys

    from tests.helpers import ROOT

    target = os.path.join(str(tmp_path), "kata-top.log")
    code = f"""
import sys, json
from kata_top import logs
logs.default_log_path = lambda: {target!r}
logs.setup_logging(defer=True)
before = "logging" in sys.modules
logs.get_logger("kata_top.engine").warning("sandbox %s: gone", "abc")
print(json.dumps([before, "logging" in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert json.loads(out.stdout) == [False, True]
    with open(target) as fh:
        assert "WARNING kata_top.engine: sandbox abc: gone" in fh.read()
