"""What an Engine is asked to do (EngineOptions), its timing constants, and what one
collection hands on (Collection)."""

from __future__ import annotations

from msgspec import Struct

from kata_top.model import Finding, Snapshot, TcChange

FAILED_RETRY_S = 30.0
VMM_REFRESH_S = 5.0  # how often a live view re-asks each VM's monitor (see EngineOptions)
# how often the dashboard reads a busy sandbox's tc counters when it is not on screen (at
# most as often as it reads such a sandbox at all: UNWATCHED_REFRESH_S)
TC_BUSY_REFRESH_S = 5.0
# namespaces per process for a one-shot read in several (collectors/read_ahead.py MIN_SHARE,
# spelled here so small nodes never import it)
READ_AHEAD_MIN_SHARE = 100
# how often the dashboard reads a sandbox at all when it is not on screen (changes at once)
UNWATCHED_REFRESH_S = 5.0


class EngineOptions(Struct, frozen=True):
    run_root: str = "/run"
    qmp_primary: bool = False
    with_vmm: bool = True
    monitor_deadline: float = 1.0
    primary_deadline: float = 0.3
    # Re-ask a VMM's monitor or API at most this often (0: every collection). A VM's devices,
    # vCPUs and memory change rarely, and QEMU answers QMP on its main loop: a dashboard
    # refreshing every second need not knock on every VM every second.
    vmm_refresh_s: float = 0.0
    # One collection only (`snapshot` without --watch): keep nothing for a next one.
    one_shot: bool = False
    # One collection only: processes that read the network namespaces (this one and forked
    # helpers, collectors/read_ahead.py). 0: as many as pay on this node (one per 100
    # namespaces, at most 4 and one more than the CPUs of ours left idle); 1: this one only.
    read_workers: int = 0
    # A sandbox whose packets move but whose tc nobody changed has its tc counters (qdiscs,
    # redirects' mirred actions) read at most this often, unless it is in Engine.watched;
    # its links' counters are read every collection and any tc change at once. 0: every
    # collection. The dashboard sets it: the kernel's tc dumps were most of a busy node's
    # cycle, and a row off screen does not need its redirect counters every second.
    tc_busy_refresh_s: float = 0.0
    # A sandbox not in Engine.watched is read again (its links' counters, and tc as above)
    # at most this often, spread per namespace between half and one and a half of it; in
    # between its last read stands as it is — unless its namespace notified a change (a
    # link, route or tc change shows at once). 0: every collection. The dashboard sets it:
    # 200 busy sandboxes cost one counters request each every second, though only the
    # ~40 rows on screen are seen (their rates then count over the time since their read).
    unwatched_refresh_s: float = 0.0


class Collection:
    """What one `Engine.collect` found: the snapshot (its freshness inside it), and what the
    stages after it need beside the snapshot."""

    __slots__ = ("orphan_findings", "reused_namespaces", "skipped_namespaces", "snapshot",
                 "tc_changes", "timings")

    def __init__(self, snapshot: Snapshot, tc_changes: dict[str, list[TcChange]],
                 timings: dict[str, float], reused_namespaces: int = 0,
                 skipped_namespaces: int = 0,
                 orphan_findings: tuple[Finding, ...] | None = None) -> None:
        self.snapshot = snapshot
        # per sandbox, the filter changes the kernel notified during this collection
        self.tc_changes = tc_changes
        # milliseconds per part of the collection, for bench/ and --debug
        self.timings = timings
        # namespaces not dumped again (idle: nothing moved), and not even probed
        # (EngineOptions.unwatched_refresh_s)
        self.reused_namespaces = reused_namespaces
        self.skipped_namespaces = skipped_namespaces
        # KT-H030 findings when asked for (collect(orphans=True)), else None
        self.orphan_findings = orphan_findings
