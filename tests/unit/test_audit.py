"""The audit log's pure parts: unfinished changes (an intent without an outcome), the lock
that marks one under way, entries that survive a line cut short, the dashboard's notice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kata_top.actions.audit import AuditLog, read_entries, unfinished, unfinished_warning
from kata_top.actions.lock import lock_path, sandbox_lock


def _intent(i: str, sandbox: str = "sb1") -> dict[str, object]:
    return {"phase": "intent", "id": i, "time": "t", "sandbox": sandbox, "pod": "ns/p",
            "operation": "ratelimit in 5Mbit", "plan": ["tc …"]}


def _outcome(i: str, **more: object) -> dict[str, object]:
    return {"phase": "outcome", "id": i, "ok": True, "changed": True, **more}


def test_an_intent_without_an_outcome_is_unfinished(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    book = AuditLog(str(log))
    for e in (_intent("a"), _outcome("a"), _intent("b"), _intent("c", "sb2"),
              _intent("d"), _outcome("d", resolves="c")):
        book.append(e)
    book.close()
    assert [e["id"] for e in unfinished(str(log))] == ["b"]
    warning = unfinished_warning(str(log))
    assert warning and "kata-top actions" in warning and "ratelimit" in warning


def test_a_change_under_way_is_not_unfinished(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    book = AuditLog(str(log))
    book.append(_intent("a"))
    book.close()
    with sandbox_lock(str(log), "sb1"):
        assert unfinished(str(log)) == []
    assert [e["id"] for e in unfinished(str(log))] == ["a"]


def test_a_line_cut_short_stays_its_own_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps(_intent("a")) + "\n" + '{"phase": "outc')
    book = AuditLog(str(log))
    book.append(_outcome("a"))
    book.close()
    assert [e["phase"] for e in read_entries(str(log))] == ["intent", "outcome"]


def test_a_lock_name_is_never_a_path(tmp_path: Path) -> None:
    log = str(tmp_path / "audit.jsonl")
    for sid in ("../../etc/passwd", "a/b", "", "x" * 500):
        assert lock_path(log, sid).startswith(str(tmp_path / "locks") + "/")
        assert "/" not in lock_path(log, sid)[len(str(tmp_path / "locks")) + 1:]


def test_the_dashboard_says_a_change_is_unfinished(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from kata_top.engine import EngineOptions
    from kata_top.sources.live import LiveSource

    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv("KATA_TOP_AUDIT_LOG", str(log))
    source = LiveSource(EngineOptions(run_root=str(tmp_path)))
    try:
        assert source.notices() == []
        book = AuditLog(str(log))
        book.append(_intent("a"))
        book.close()
        assert "unfinished change" in source.notices()[0]
    finally:
        source.close()


def test_audit_lines_name_the_run_root_and_each_roots_tail_keeps_its_own(tmp_path: Path
                                                                         ) -> None:
    """One audit log serves every run root on the node: its intent and outcome lines name the
    root the change was planned under, and a root's event tail leaves the others' out (lines
    naming none, from before roots were recorded, are left to the events' sandbox check)."""
    from kata_top.actions.audit import entry_for, intent_for
    from kata_top.actions.model import Outcome, Plan
    from kata_top.events.audit_tail import AuditTail
    from kata_top.model import Hypervisor, NetnsInfo, Pod, Sandbox

    sb = Sandbox(id="e" * 64, runtime="go", network_model="tcfilter",
                 netns=NetnsInfo(None, None), pod=Pod("web-0", "default"), state="running",
                 hypervisor=Hypervisor("qemu", 1, True))
    plan = Plan(sb, str(tmp_path / "no-such-netns"), "x", "redirect add in", "t",
                run_root="/run/lab-a/")
    intent = intent_for(plan)
    outcome = entry_for(plan, Outcome(True, "done", True), intent)
    assert intent["run_root"] == outcome["run_root"] == "/run/lab-a"
    unrooted = Plan(sb, "/x", "x", "redirect add in", "t")
    assert "run_root" not in intent_for(unrooted)

    log = tmp_path / "audit.jsonl"
    tail_a, tail_b = AuditTail(str(log), "/run/lab-a"), AuditTail(str(log), "/run/lab-b/")
    anyroot = AuditTail(str(log))
    old = {k: v for k, v in outcome.items() if k != "run_root"}
    with open(log, "a") as fh:
        for line in (intent, outcome, {**outcome, "run_root": "/run/lab-b"}, old):
            fh.write(json.dumps(line) + "\n")
    assert [e.get("run_root") for e in tail_a.new_entries()] == ["/run/lab-a", None]
    assert [e.get("run_root") for e in tail_b.new_entries()] == ["/run/lab-b", None]
    assert len(anyroot.new_entries()) == 3  # no root given: every outcome (intents are not)


def test_asking_whether_a_change_holds_the_lock_never_blocks_on_a_fifo(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    audit = str(tmp_path / "audit.log")
    fifo = lock_path(audit, "sb1")
    os.makedirs(os.path.dirname(fifo))
    os.mkfifo(fifo)
    # in a child: a blocked open cannot be interrupted in this process
    code = ("import sys; from kata_top.actions.lock import is_held; "
            f"sys.exit(0 if is_held({audit!r}, 'sb1') is False else 1)")
    done = subprocess.run([sys.executable, "-c", code], timeout=20, check=False)
    assert done.returncode == 0
