"""One pipeline for every command: what one of them gets from it, the others get too."""

from __future__ import annotations

import json
import os
from typing import Any

from kata_top.cli.main import main


def _out(capsys: Any, argv: list[str]) -> str:
    capsys.readouterr()
    main(argv)
    return str(capsys.readouterr().out)


def test_snapshot_watch_carries_the_host_findings_check_reports(tmp_path: Any,
                                                                capsys: Any) -> None:
    """`snapshot --watch` (a recording --replay plays) and `check` judge the host through
    the same pipeline stage: the stream's snapshots carry the host findings `check` lists."""
    root = str(tmp_path)
    check = json.loads(_out(capsys, ["check", "--json", "--run-root", root]))
    host = sorted(f["code"] for f in check["findings"] if f["sandbox"] is None)
    lines = _out(capsys, ["snapshot", "--watch", "0.05", "--count", "2", "--run-root", root])
    docs = [json.loads(ln) for ln in lines.splitlines()]
    assert len(docs) == 2
    for doc in docs:
        assert sorted(f["code"] for f in doc["host_findings"]) == host
        assert doc["links_read_at"] == {} and doc["tc_read_at"] == {}
    assert os.listdir(root) == []  # read only
