"""The `vmm` section of each sandbox: /proc facts always, a monitor or API when it is safe.

Order, because QEMU serves one QMP client and Kata's shim holds `qmp.sock` for the VM's life
(a second client could stall the runtime): the extra monitor Kata creates with
`extra_monitor_socket`; Kata's own `qmp.sock` only on explicit opt-in, with a short deadline;
Cloud Hypervisor's REST API (many clients allowed); otherwise /proc alone, with the reason.
All queries of a cycle run concurrently under a global bound, each with its own deadline.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

from msgspec.structs import replace

from kata_top.boundedjson import loads
from kata_top.collectors import qmp, vmm_proc
from kata_top.collectors.procs import pid_alive
from kata_top.collectors.vmm_target import VmmTarget
from kata_top.model import Vmm, VmmNic, VmmSource, vmm_status

OVERALL_DEADLINE_S = 2.0
NO_MONITOR_REASON = ("no extra monitor configured; set extra_monitor_socket = \"qmp\" and "
                     "enable_debug = true in [hypervisor.qemu] to allow it")
PRIMARY_NOT_ASKED = ("qmp.sock belongs to the Kata runtime and was not asked "
                     "(--qmp-primary opts in)")
MONITOR_DEADLINE_S = 1.0
PRIMARY_DEADLINE_S = 0.3
CONCURRENCY = 8


def _proc_vmm(t: VmmTarget) -> Vmm:
    if not t.pid or not pid_alive(t.pid):
        return Vmm(source="none", status="dead", reason="the VMM process is not running")
    if t.kind != "qemu":
        return Vmm(source="proc", status="unknown", reason=f"{t.kind}: only /proc is read")
    return vmm_proc.inspect(t.pid, t.argv)


def _merge_nics(monitor: Sequence[VmmNic], proc: Sequence[VmmNic]) -> tuple[VmmNic, ...]:
    """Monitor NICs, with tap/vhost/queues filled from the command line where it knows them."""
    by_netdev = {n.netdev: n for n in proc}
    by_mac = {n.mac: n for n in proc}
    out: list[VmmNic] = []
    for n in monitor:
        p = by_netdev.get(n.netdev) or by_mac.get(n.mac)
        out.append(VmmNic(netdev=n.netdev, mac=n.mac, model=n.model,
                          tap=n.tap or (p.tap if p else None),
                          vhost=p.vhost if p else None, queues=p.queues if p else None,
                          fds=n.fds or (p.fds if p else ()), rx_filter=n.rx_filter))
    return tuple(out) or tuple(proc)


def _from_monitor(base: Vmm, facts: qmp.MonitorFacts, source: VmmSource) -> Vmm:
    return Vmm(source=source, status=vmm_status(facts.status), name=facts.name or base.name,
               version=facts.version, machine=base.machine, accel=base.accel,
               vcpus=facts.vcpus or base.vcpus,
               vcpu_threads=tuple(facts.vcpu_threads) or base.vcpu_threads,
               memory_bytes=facts.memory_bytes or base.memory_bytes,
               plugged_memory_bytes=facts.plugged_memory_bytes,
               nics=_merge_nics(facts.nics, base.nics), taps_held=base.taps_held,
               vhost_net_fds=base.vhost_net_fds, devices=tuple(facts.devices) or base.devices,
               chardevs=tuple(facts.chardevs), monitor_kind=facts.kind,
               query_ms=round(facts.elapsed_ms, 2), queried_at=time.time())


def _with(base: Vmm, **kw: object) -> Vmm:
    return replace(base, **kw)


async def _clh_api(sock_path: str, deadline: float) -> dict[str, object]:
    async def get(path: str) -> object:
        reader, writer = await asyncio.open_unix_connection(sock_path)
        try:
            writer.write(f"GET /api/v1/{path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        _head, _, body = raw.partition(b"\r\n\r\n")
        return loads(body) if body.strip() else None

    async def both() -> dict[str, object]:
        return {"info": await get("vm.info"), "counters": await get("vm.counters")}

    return await asyncio.wait_for(both(), deadline)


async def _one(t: VmmTarget, sem: asyncio.Semaphore, qmp_primary: bool,
               monitor_deadline: float, primary_deadline: float) -> Vmm:
    base = _proc_vmm(t)
    if base.status == "dead":
        return base
    async with sem:
        if t.kind == "clh" and t.api_socket:
            start = time.monotonic()
            try:
                api = await _clh_api(t.api_socket, monitor_deadline)
            except (OSError, TimeoutError, ValueError) as exc:
                return _with(base, error=f"cloud-hypervisor API: {exc or type(exc).__name__}")
            info = api.get("info")
            state = info.get("state") if isinstance(info, dict) else None
            return _with(base, source="api", status=vmm_status(str(state or "unknown").lower()),
                         query_ms=round((time.monotonic() - start) * 1000, 2),
                         queried_at=time.time())
        if t.kind != "qemu":
            return base
        extra = os.path.join(t.vm_dir, "extra-monitor.sock")
        primary = os.path.join(t.vm_dir, "qmp.sock")
        if os.path.exists(extra):
            try:
                facts = await qmp.query_monitor(extra, monitor_deadline)
                return _from_monitor(base, facts, "extra-monitor")
            except qmp.MonitorBusy as exc:
                return _with(base, reason=f"busy: the extra monitor has another client ({exc})")
            except qmp.MonitorError as exc:
                return _with(base, error=f"extra monitor: {exc}")
        if qmp_primary and os.path.exists(primary):
            try:
                facts = await qmp.query_monitor(primary, primary_deadline)
                return _from_monitor(base, facts, "qmp")
            except qmp.MonitorBusy:
                return _with(base, reason="busy: qmp.sock held by the runtime (no greeting "
                                          f"within {primary_deadline * 1000:.0f} ms)")
            except qmp.MonitorError as exc:
                return _with(base, error=f"qmp.sock: {exc}")
        return _with(base, reason=NO_MONITOR_REASON if not qmp_primary else
                     "no qmp.sock or extra monitor found")


def collect_vmms(targets: Sequence[VmmTarget], qmp_primary: bool = False,
                 monitor_deadline: float = MONITOR_DEADLINE_S,
                 primary_deadline: float = PRIMARY_DEADLINE_S,
                 concurrency: int = CONCURRENCY,
                 overall_deadline: float = OVERALL_DEADLINE_S) -> dict[str, Vmm]:
    """Run all VMM queries of one cycle on a private event loop (call from a worker thread).

    Each query has its own deadline, and the cycle has one overall: silent monitors queue
    behind the concurrency bound, so without it 17 of them cost seconds per collection.
    Queries still running then are cancelled (their sockets closed) and say so."""
    if not targets:
        return {}

    async def main() -> list[Vmm | BaseException | None]:
        sem = asyncio.Semaphore(concurrency)
        tasks = [asyncio.ensure_future(
            _one(t, sem, qmp_primary, monitor_deadline, primary_deadline)) for t in targets]
        _done, pending = await asyncio.wait(tasks, timeout=overall_deadline)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)  # let them disconnect
        return [None if task in pending else
                (task.exception() or task.result()) for task in tasks]

    results = asyncio.run(main())
    out: dict[str, Vmm] = {}
    for t, r in zip(targets, results, strict=True):
        if r is None:
            out[t.sandbox_id] = _with(_proc_vmm(t), reason=(
                f"not asked: this cycle's monitor time ({overall_deadline:g} s) ran out "
                "(many monitors busy or silent)"))
        elif isinstance(r, BaseException):
            out[t.sandbox_id] = Vmm(source="none", status="unknown",
                                    error=f"{type(r).__name__}: {r}")
        else:
            out[t.sandbox_id] = r
    return out
