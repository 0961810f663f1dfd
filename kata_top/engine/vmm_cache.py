"""VMM facts kept between collections: a VM's monitor or API is asked again only every
vmm_refresh_s (and a failed or busy one only every FAILED_RETRY_S)."""

from __future__ import annotations

import time

from kata_top.collectors.vmm_target import VmmTarget
from kata_top.engine.options import FAILED_RETRY_S, EngineOptions
from kata_top.model import Vmm


class VmmCache:
    def __init__(self, opts: EngineOptions) -> None:
        self.opts = opts
        self._cache: dict[str, tuple[int | None, float, Vmm]] = {}  # sid: (pid, asked, facts)
        self._failed: dict[str, tuple[int | None, float, Vmm]] = {}  # the same, failures

    def facts(self, targets: list[VmmTarget], fresh: bool) -> dict[str, Vmm]:
        """VMM facts of this cycle: reused for a VM asked less than vmm_refresh_s ago (same
        pid, and the answer was a monitor's or API's), asked afresh otherwise."""
        now = time.monotonic()
        reuse: dict[str, Vmm] = {}
        ask: list[VmmTarget] = []
        for t in targets:
            cached = self._cache.get(t.sandbox_id)
            if (not fresh and cached is not None and cached[0] == t.pid
                    and now - cached[1] < self.opts.vmm_refresh_s):
                reuse[t.sandbox_id] = cached[2]
            else:
                ask.append(t)
        # A monitor that failed or was busy is not knocked on again every cycle: after
        # FAILED_RETRY_S (or `r`), so broken VMs cost nothing between tries.
        retry = [t for t in ask if fresh or not self._failed_recently(t, now)]
        for t in ask:
            if t not in retry:
                reuse[t.sandbox_id] = self._failed[t.sandbox_id][2]
        from kata_top.collectors.vmm import (
            collect_vmms,  # asyncio and QMP: only when a VMM is asked
        )

        asked = collect_vmms(retry, qmp_primary=self.opts.qmp_primary,
                             monitor_deadline=self.opts.monitor_deadline,
                             primary_deadline=self.opts.primary_deadline)
        by_pid = {t.sandbox_id: t.pid for t in targets}
        self._cache = {sid: v for sid, v in self._cache.items() if sid in by_pid}
        self._failed = {sid: v for sid, v in self._failed.items() if sid in by_pid}
        for sid, vmm in asked.items():
            if vmm.queried_at is not None and not vmm.error:
                self._cache[sid] = (by_pid[sid], now, vmm)
                self._failed.pop(sid, None)
            else:
                self._cache.pop(sid, None)
                if vmm.error or (vmm.reason or "").startswith("busy"):
                    self._failed[sid] = (by_pid[sid], now, vmm)
        return {**reuse, **asked}

    def _failed_recently(self, t: VmmTarget, now: float) -> bool:
        failed = self._failed.get(t.sandbox_id)
        return failed is not None and failed[0] == t.pid and now - failed[1] < FAILED_RETRY_S
