"""Rates and findings over a stream of snapshots: what the memos keep from cycle to cycle
(idle sandboxes passed through as the very same objects) never changes what comes out."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from kata_top.diagnose import annotate
from kata_top.formats.recording import load_recording
from kata_top.model import LinkStats, Sandbox, Snapshot
from kata_top.rates import with_rates
from kata_top.same_object import SameObjectMemo
from kata_top.stream import Derivation
from tests.helpers import ROOT

DEMO, _ = load_recording(os.path.join(ROOT, "tests", "data", "demo.ndjson"))
# the engine's sandboxes: no rates, no findings yet
RAW = [replace(sb, rates={}, findings=()) for sb in DEMO[-1].sandboxes]

# per cycle: for each sandbox, keep the very object (0), move its counters (1), or drop it (2)
_CYCLES = st.lists(st.lists(st.integers(0, 2), min_size=len(RAW), max_size=len(RAW)),
                   min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(_CYCLES)
def test_memos_change_nothing_that_comes_out(cycles: list[list[int]]) -> None:
    current = list(RAW)
    stream = Derivation()
    prev_memo: Snapshot | None = None
    prev_plain: Snapshot | None = None
    t = DEMO[-1].taken_at
    for n, moves in enumerate(cycles):
        t += 1.0
        sandboxes = []
        for i, move in enumerate(moves):
            sb = current[i]
            if move == 1:
                sb = current[i] = replace(sb, links=tuple(
                    replace(lk, stats=LinkStats(rx_bytes=lk.stats.rx_bytes + 1000 * (n + 1),
                                                rx_packets=lk.stats.rx_packets + n + 1))
                    for lk in sb.links))
            if move != 2:
                sandboxes.append(sb)
        raw = replace(DEMO[-1], taken_at=t, sandboxes=tuple(sandboxes))
        memo = stream.next(raw)
        plain = annotate(with_rates(raw, prev_plain), prev_plain)
        assert memo == plain
        if prev_memo is not None:  # an unchanged idle sandbox is the last one itself
            before = {sb.id: sb for sb in prev_memo.sandboxes}
            for sb, move in zip(memo.sandboxes, [m for m in moves if m != 2], strict=True):
                if move == 0 and sb.id in before and not any(sb.rates.values()) and \
                        before[sb.id].rates and not any(before[sb.id].rates.values()) and \
                        sb.findings == before[sb.id].findings:
                    assert sb is before[sb.id]
        prev_memo, prev_plain = memo, plain


def test_an_idle_sandbox_is_judged_once_then_passed_through() -> None:
    calls: list[Any] = []
    import kata_top.diagnose.findings as findings

    real = findings.sandbox_findings

    def counting(sb: Sandbox, prev: Sandbox | None) -> Any:
        calls.append(sb.id)
        return real(sb, prev)

    findings.sandbox_findings = counting
    try:
        raw_seen: dict[str, Sandbox] = {}
        stable: dict[str, Sandbox] = {}
        prev: Snapshot | None = None
        counts = []
        for k in range(4):
            raw = replace(DEMO[-1], taken_at=DEMO[-1].taken_at + k, sandboxes=tuple(RAW))
            calls.clear()
            prev = annotate(with_rates(raw, prev, raw_seen), prev, stable)
            counts.append(len(calls))
    finally:
        findings.sandbox_findings = real
    assert counts[0] == counts[1] == len(RAW)  # first sight, then judged against itself
    assert counts[3] < len(RAW)  # from then on the idle ones are not judged again


def test_a_value_is_kept_while_its_object_is_the_same() -> None:
    calls: list[str] = []

    def compute(s: str) -> int:
        calls.append(s)
        return len(s)

    memo: SameObjectMemo[str, int] = SameObjectMemo()
    a, b = "x" * 3, "y" * 4
    assert memo.get("k", a, compute) == 3
    memo.end_round()
    assert memo.get("k", a, compute) == 3 and calls == [a]  # the same object: kept
    assert memo.get("k", b, compute) == 4 and calls == [a, b]  # another: computed
    memo.end_round()
    memo.end_round()  # a round that did not ask for "k" forgets it
    assert memo.get("k", b, compute) == 4 and calls == [a, b, b]
