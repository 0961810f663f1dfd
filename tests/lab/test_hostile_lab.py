"""Hostile state that needs root to collect beside it: the healthy sandbox's namespace is
the test process's own, and entering a namespace (setns) needs CAP_SYS_ADMIN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from kata_top.formats.terminal import for_terminal
from tests.helpers import ROOT, need_root
from tests.run_roots import HEALTHY, assert_schema_valid, by_id, collect, persist, run_root

pytestmark = pytest.mark.timeout(60)


def test_fifo_symlink_and_huge_state_files_are_that_sandboxes_error(tmp_path: Any) -> None:
    need_root()  # the healthy sandbox's namespace is the node's own: setns needs root
    secret = tmp_path / "outside.json"
    secret.write_text(json.dumps(persist(name="stolen")))
    root = run_root(tmp_path / "root", {
        HEALTHY: persist(),
        "b" * 64: lambda p: os.mkfifo(p),
        "c" * 64: lambda p: os.symlink(str(secret), p),
        "d" * 64: b"{" * 200_000,  # nesting deeper than the parser's stack
        "e" * 64: b"",
    })
    snap = collect(root)
    sbs = by_id(snap)
    assert not sbs[HEALTHY].errors and sbs[HEALTHY].pod.name == "web-0"
    assert sbs[HEALTHY].links, "the healthy sandbox was collected in full"
    assert "FIFO" in sbs["b" * 64].errors[0].message
    assert "symlink" in sbs["c" * 64].errors[0].message
    assert sbs["c" * 64].pod.name is None  # nothing read through the link
    assert "corrupt" in sbs["d" * 64].errors[0].message
    assert sbs["e" * 64].state == "corrupt"
    assert_schema_valid(snap)


def test_namespace_paths_that_are_not_namespaces(tmp_path: Any) -> None:
    need_root()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    plain = tmp_path / "plain"
    plain.write_text("")
    root = run_root(tmp_path / "root", {
        HEALTHY: persist(),
        "1" * 64: persist(netns=str(fifo)),
        "2" * 64: persist(netns=str(plain)),
        "3" * 64: persist(netns="/run/netns/bad\x00name"),
        "4" * 64: persist(netns=str(tmp_path / "no-such-ns")),
    })
    snap = collect(root)
    sbs = by_id(snap)
    assert not sbs[HEALTHY].errors and sbs[HEALTHY].links
    assert "not a network namespace" in sbs["1" * 64].errors[0].message
    assert "not a network namespace" in sbs["2" * 64].errors[0].message
    assert "null" in sbs["3" * 64].errors[0].message.lower()
    assert "gone" in sbs["4" * 64].errors[0].message
    assert not os.path.exists(tmp_path / "no-such-ns")  # nothing was created
    assert_schema_valid(snap)


def test_escape_sequences_and_bad_text_never_reach_the_terminal(tmp_path: Any) -> None:
    need_root()
    evil = "web\x1b]0;owned\x07\x1b[2J\udcff; rm -rf /"
    root = run_root(tmp_path / "root", {HEALTHY: persist(name=evil, Network={
        "NetworkID": "/proc/self/ns/net", "Endpoints": []})})
    env = {**os.environ, "KATA_TOP_CONFIG": str(tmp_path / "none.json")}
    for argv in (["snapshot"], ["check"], ["snapshot", "--prometheus"],
                 ["snapshot", "--json"]):
        out = subprocess.run([sys.executable, "-m", "kata_top", *argv, "--run-root", root,
                              "--log-file", os.devnull], cwd=ROOT, capture_output=True,
                             timeout=120, check=False, env=env)
        assert b"Traceback" not in out.stderr, out.stderr
        assert out.returncode in (0, 1, 3), (argv, out.stderr)
        assert b"\x1b" not in out.stdout and b"\x07" not in out.stdout, argv
        out.stdout.decode("utf-8")  # valid UTF-8 whatever the state file held
    assert "\\x1b]0;owned\\x07" in for_terminal(evil)
