"""The collection engine: one Snapshot per cycle from state files, /proc, netlink and monitors.

A failure in one sandbox (namespace gone, VMM exiting, corrupt state) becomes an error in that
sandbox's section; the rest of the snapshot is complete. Call `collect()` from one thread only:
the netlink sockets it caches belong to the thread that made them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
import zlib
from typing import TYPE_CHECKING

from msgspec import Struct

from kata_top import derive
from kata_top.collectors import netns, procs, shimsock, state
from kata_top.collectors.vmm_target import VmmTarget
from kata_top.logs import DEBUG, get_logger
from kata_top.model import (
    Direction,
    Finding,
    HostInfo,
    Hypervisor,
    Link,
    NetnsInfo,
    NetnsSource,
    Pod,
    ProcInfo,
    Qdisc,
    Runtime,
    Sandbox,
    SandboxError,
    SandboxState,
    ShimMonitorState,
    Snapshot,
    TcChange,
    Virtiofsd,
    Vmm,
    evolve,
    kata_state,
)

if TYPE_CHECKING:
    from kata_top.collectors.netcollect import NetCollector
    from kata_top.collectors.rtnl import NetnsDump

_NsPath = tuple[str | None, NetnsSource | None, "netns.NetnsId | None"]
_Built = tuple[tuple[object, ...], tuple[Link, ...], tuple[Qdisc, ...], Sandbox]
HYPERVISOR_NAMES = {"qemu": "qemu", "clh": "cloud-hypervisor", "firecracker": "firecracker",
                    "dragonball": "dragonball"}
log = get_logger(__name__)
FAILED_RETRY_S = 30.0
SHIM_PROBE_EVERY_S = 30.0  # mean interval between connects to a listening shim socket
VMM_REFRESH_S = 5.0  # how often a live view re-asks each VM's monitor (see EngineOptions)
# how often the dashboard reads a busy sandbox's tc counters when it is not on screen (at
# most as often as it reads such a sandbox at all: UNWATCHED_REFRESH_S)
TC_BUSY_REFRESH_S = 5.0
# namespaces per process for a one-shot read in several (collectors/read_ahead.py MIN_SHARE,
# spelled here so small nodes never import it)
READ_AHEAD_MIN_SHARE = 100
# how often the dashboard reads a sandbox at all when it is not on screen (changes at once)
UNWATCHED_REFRESH_S = 5.0
# Flags that throttle virtiofsd's I/O. `--rlimit-nofile` is not one: it is the open-files
# limit (Virtiofsd.rlimit_nofile).
VIRTIOFSD_RATE_FLAGS = ("--rate-limit", "--iops", "--bps")


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


class Engine:
    def __init__(self, opts: EngineOptions) -> None:
        self.opts = opts
        self._net_made: NetCollector | None = None  # see _net
        self._procs = procs.ProcCache()
        self._named: dict[netns.NetnsId, str] = {}
        self._named_cache = netns.NamedNetnsCache()
        self._used_ns: set[netns.NetnsId] = set()
        self._fd_room = 0  # namespaces the open files limit was last made to fit
        self._states = state.StateCache()
        self._vmm_cache: dict[str, tuple[int | None, float, Vmm]] = {}  # sid: (pid, asked, facts)
        self._vmm_failed: dict[str, tuple[int | None, float, Vmm]] = {}  # the same, failures
        # per sandbox, the filter changes the kernel notified during the last collect()
        self.tc_changes: dict[str, list[TcChange]] = {}
        # per sandbox: (its inputs, its dump's links and qdiscs, the Sandbox built from them)
        self._built: dict[str, _Built] = {}
        self._built_now: dict[str, _Built] = {}
        # per sandbox: (when to connect to its shim's socket again, what was found)
        self._shim_seen: dict[str, tuple[float, ShimMonitorState]] = {}
        self._shim_now: dict[str, tuple[float, ShimMonitorState]] = {}
        # The sandboxes whose tc counters are read every collection whatever
        # tc_busy_refresh_s says (what is on the operator's screen); None: all of them.
        self.watched: frozenset[str] | None = None
        # Per sandbox whose tc counters the last collect() did not read again: the
        # `taken_at` of the collection that read them (kata_top/rates.py divides by it).
        self.tc_read_at: dict[str, float] = {}
        self._tc_read: dict[str, float] = {}
        # The same for sandboxes the last collect() did not read at all (unwatched_refresh_s):
        # the `taken_at` of the collection that read their links' counters.
        self.read_at: dict[str, float] = {}
        self._read: dict[str, float] = {}
        self._read_now: dict[str, float] = {}
        self._tc_read_now: dict[str, float] = {}
        self._taken_at = 0.0  # the collection under way's
        # milliseconds per part of the last collect(), for bench/ and --debug
        self.timings: dict[str, float] = {}
        self._host = HostInfo(node=os.uname().nodename, kernel=os.uname().release,
                              run_root=opts.run_root, root=os.geteuid() == 0)

    @property
    def _net(self) -> NetCollector:
        """The netlink side, made when a first sandbox namespace is to be read: on a node
        without sandboxes a one-shot command never imports it (sockets, the decoders)."""
        if self._net_made is None:
            from kata_top.collectors.netcollect import NetCollector

            self._net_made = NetCollector(one_shot=self.opts.one_shot)
        return self._net_made

    def close(self) -> None:
        if self._net_made is not None:
            self._net_made.close()

    def orphan_findings(self) -> list[Finding]:
        """KT-H030 for each named namespace that holds a Kata tap but belongs to no sandbox
        under any known run root (collectors/orphans.py); `ip netns delete` is offered only
        when no process is in it either."""
        from kata_top.collectors.orphans import judge_orphans

        return judge_orphans(self._named_cache.get(), self._used_ns, self.opts.run_root)

    @property
    def reused_namespaces(self) -> int:
        """Namespaces the last collect() did not dump again (idle: nothing moved)."""
        return self._net_made.tc_reused if self._net_made is not None else 0

    def _vmms(self, targets: list[VmmTarget], fresh: bool) -> dict[str, Vmm]:
        """VMM facts of this cycle: reused for a VM asked less than vmm_refresh_s ago (same
        pid, and the answer was a monitor's or API's), asked afresh otherwise."""
        now = time.monotonic()
        reuse: dict[str, Vmm] = {}
        ask: list[VmmTarget] = []
        for t in targets:
            cached = self._vmm_cache.get(t.sandbox_id)
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
                reuse[t.sandbox_id] = self._vmm_failed[t.sandbox_id][2]
        from kata_top.collectors.vmm import (
            collect_vmms,  # asyncio and QMP: only when a VMM is asked
        )

        asked = collect_vmms(retry, qmp_primary=self.opts.qmp_primary,
                             monitor_deadline=self.opts.monitor_deadline,
                             primary_deadline=self.opts.primary_deadline)
        by_pid = {t.sandbox_id: t.pid for t in targets}
        self._vmm_cache = {sid: v for sid, v in self._vmm_cache.items() if sid in by_pid}
        self._vmm_failed = {sid: v for sid, v in self._vmm_failed.items() if sid in by_pid}
        for sid, vmm in asked.items():
            if vmm.queried_at is not None and not vmm.error:
                self._vmm_cache[sid] = (by_pid[sid], now, vmm)
                self._vmm_failed.pop(sid, None)
            else:
                self._vmm_cache.pop(sid, None)
                if vmm.error or (vmm.reason or "").startswith("busy"):
                    self._vmm_failed[sid] = (by_pid[sid], now, vmm)
        return {**reuse, **asked}

    def _read_ahead(self, net: NetCollector, ids: list[str],
                    ns_paths: dict[str, _NsPath]) -> None:
        """A large node read once: helpers read the later sandboxes' namespaces meanwhile."""
        jobs: dict[netns.NetnsId, str] = {}
        for sid in ids:
            path, _source, ns_id = ns_paths[sid]
            if path and ns_id is not None:
                jobs.setdefault(ns_id, path)
        if len(jobs) < 2 * READ_AHEAD_MIN_SHARE and self.opts.read_workers < 2:
            return  # not worth a fork (nor the import)
        from kata_top.collectors.read_ahead import workers_for

        net.read_ahead([(path, key) for key, path in jobs.items()],
                       workers_for(len(jobs), self.opts.read_workers))

    def _make_fd_room(self, sockets: int) -> None:
        """A socket per namespace stays open between cycles: make the room (kata_top/fdlimit.py)
        and say once when the hard limit leaves too little."""
        from kata_top.fdlimit import ensure_room

        soft, wanted = ensure_room(sockets)
        # fits: asked again once the node outgrows it; too low: said once, never asked again
        self._fd_room = sockets if soft >= wanted else 1 << 62
        if soft < wanted:
            log.warning("open files limited to %d (hard limit), %d wanted for %d network "
                        "namespaces: some sandboxes will show \"Too many open files\"; "
                        "raise it with `ulimit -n` or LimitNOFILE=", soft, wanted, sockets)

    def _failed_recently(self, t: VmmTarget, now: float) -> bool:
        failed = self._vmm_failed.get(t.sandbox_id)
        return failed is not None and failed[0] == t.pid and now - failed[1] < FAILED_RETRY_S

    def collect(self, fresh_vmm: bool = False) -> Snapshot:
        """One snapshot. fresh_vmm: ask every VMM now, whatever vmm_refresh_s says."""
        t0 = time.monotonic()
        taken_at = self._taken_at = time.time()
        self.tc_changes = {}
        self.tc_read_at = {}
        self.read_at = {}
        found, disc_errors = state.discover(self.opts.run_root)
        root = self.opts.run_root
        records = {sid: self._states.read(sid, path, rt, root=root) for sid, rt, path in found}
        self._states.prune({path for _sid, _rt, path in found})
        t_state = time.monotonic()
        pidx = procs.scan()
        t_procs = time.monotonic()
        # A VMM is an orphan of this run root unless its command line names another root
        # (a lab or a rootless Kata beside the node's).
        root = os.path.normpath(self.opts.run_root)
        orphans = sorted(sid for sid in set(pidx.vmm) - set(records)
                         if _same_root(pidx.vmm_root.get(sid), root))
        # A virtiofsd left with neither state nor VMM (its sandbox is gone) is one too, when
        # its socket path names this run root (it always names one: <root>/vc/vm/<id>/...).
        orphans += sorted(sid for sid in set(pidx.virtiofsd) - set(records) - set(pidx.vmm)
                          if sid in pidx.virtiofsd_root
                          and _same_root(pidx.virtiofsd_root[sid], root))
        ids = list(records) + orphans
        top_errors = [SandboxError(e.where, e.message) for e in disc_errors]
        if not self._host.root:
            top_errors.append(SandboxError("host", "not running as root: Kata's state files "
                                           "(0600) and other namespaces may be unreadable"))

        # Namespace of every sandbox first, so the peer index knows which are sandboxes.
        ns_paths: dict[str, _NsPath] = {}
        sandbox_ns: set[netns.NetnsId] = set()
        used_ns: set[netns.NetnsId] = set()
        for sid in ids:
            rec = records.get(sid)
            path, source = self._netns_path(rec, pidx.vmm.get(sid))
            ns_id: netns.NetnsId | None = None
            if path:
                # once per cycle: on a node with 1,000 mounts under /run/netns a lookup there
                # is not free
                with contextlib.suppress(OSError, ValueError):  # ValueError: a NUL in it
                    ns_id = netns.netns_id(path)
            ns_paths[sid] = (path, source, ns_id)
            # Only pod namespaces named by state are excluded from the veth-peer candidates:
            # a `none` sandbox found through /proc usually shares the node's namespace.
            if ns_id is not None and source == "state":
                sandbox_ns.add(ns_id)
            if ns_id is not None:
                used_ns.add(ns_id)  # any sandbox's, a `none` one's shared namespace too
        sandbox_ns.discard(netns.own_netns_id())
        self._used_ns = used_ns
        # the names, for the sandboxes' namespaces and the veth peers': none to look up
        # without a sandbox (`check` asks the cache itself, see orphan_findings)
        self._named = self._named_cache.get(
            lambda: {p: i for p, _s, i in ns_paths.values() if p and i is not None}) \
            if ids else {}
        # (with no sandbox, a netlink side made before still ends its cycle: it closes the
        # sockets of namespaces gone since)
        net = self._net if ids or self._net_made is not None else None
        if net is not None:
            if len(used_ns) + len(self._named) > self._fd_room:
                self._make_fd_room(len(used_ns) + len(self._named))
            net.begin_cycle(sandbox_ns, self._named)
            if self.opts.one_shot and self.opts.read_workers != 1:
                self._read_ahead(net, ids, ns_paths)

        sandboxes: list[Sandbox] = []
        targets: list[VmmTarget] = []
        req0 = _request_seconds() if net is not None else 0.0
        t_ns = time.monotonic()
        for sid in ids:
            try:
                sb, target = self._one(sid, records.get(sid), pidx, ns_paths[sid])
            except Exception as exc:  # one bad sandbox never fails the others
                log.warning("sandbox %s: %s: %s", sid[:12], type(exc).__name__, exc,
                            exc_info=log.isEnabledFor(DEBUG))
                sb, target = _unreadable(sid, records.get(sid), ns_paths[sid][0], exc), None
            sandboxes.append(sb)
            if target is not None:
                targets.append(target)
        if net is not None:
            net.end_cycle()
        self._built, self._built_now = self._built_now, {}
        self._tc_read, self._tc_read_now = self._tc_read_now, {}
        self._read, self._read_now = self._read_now, {}
        self._shim_seen, self._shim_now = self._shim_now, {}
        t_sb = time.monotonic()
        kernel = _request_seconds() - req0 if net is not None else 0.0

        if self.opts.with_vmm and targets:
            vmms = self._vmms(targets, fresh_vmm)
            sandboxes = [_with_vmm(sb, vmms.get(sb.id)) for sb in sandboxes]
        live = set(pidx.cmdlines)
        self._procs.prune(live)
        t_end = time.monotonic()
        # netlink: waiting on the kernel's dumps; sandboxes: decoding them and everything
        # else per sandbox (/proc facts, derivation, building the model)
        self.timings = {k: round(v * 1000, 2) for k, v in (
            ("state", t_state - t0), ("procs", t_procs - t_state),
            ("namespaces", t_ns - t_procs), ("netlink", kernel),
            ("sandboxes", t_sb - t_ns - kernel), ("vmm", t_end - t_sb))}
        return Snapshot(taken_at=taken_at, host=self._host, sandboxes=tuple(sandboxes),
                        errors=tuple(top_errors),
                        duration_ms=round((time.monotonic() - t0) * 1000, 2))

    @staticmethod
    def _netns_path(rec: state.StateRecord | None,
                    vmm_pid: int | None) -> tuple[str | None, NetnsSource | None]:
        if rec is not None and rec.netns_path:
            return rec.netns_path, "state"
        pid = (rec.hypervisor_pid if rec else None) or vmm_pid
        if pid and procs.pid_alive(pid):
            return f"/proc/{pid}/ns/net", "proc"
        return None, None

    def _vm_dir(self, sid: str, runtime: str) -> str:
        if runtime == "rs":
            return os.path.join(self.opts.run_root, "kata", sid)
        return os.path.join(self.opts.run_root, "vc", "vm", sid)

    def _one(self, sid: str, rec: state.StateRecord | None, pidx: procs.ProcessIndex,
             ns: _NsPath) -> tuple[Sandbox, VmmTarget | None]:
        errors: list[SandboxError] = []
        runtime: Runtime = rec.runtime if rec else "unknown"
        if rec is not None and rec.error:
            errors.append(SandboxError("state", rec.error))
        vmm_pid = pidx.vmm.get(sid) or (rec.hypervisor_pid if rec else None)
        alive = procs.pid_alive(vmm_pid)
        if alive and vmm_pid not in pidx.cmdlines and sid not in pidx.vmm:
            # The recorded pid lives but is not this sandbox's VMM (pid reused).
            alive = False
        kind = pidx.vmm_kind.get(sid) or (rec.hypervisor if rec else None) or "unknown"
        sb_state: SandboxState
        if rec is None:
            sb_state = "orphan"
        elif rec.error and rec.state is None:
            sb_state = "corrupt"
        elif not alive:
            sb_state = "stale"
        else:
            sb_state = kata_state(rec.state)

        path, ns_source, ns_id = ns
        netns_info = NetnsInfo(path=path, inode=None, source=ns_source)
        dump: NetnsDump | None = None
        deferred = False  # the dump's tc counters are an earlier collection's
        if path:
            try:
                if ns_id is None:
                    ns_id = netns.netns_id(path)  # raises what made it fail a moment ago
                named = self._named.get(ns_id)
                netns_info = NetnsInfo(path=path, inode=ns_id.inode, dev=ns_id.dev, name=named,
                                       source=ns_source)
                watched = self.watched is None or sid in self.watched
                _key, dump = self._net.collect(
                    path, ns_id, 0.0 if watched else self.opts.tc_busy_refresh_s,
                    0.0 if watched else self.opts.unwatched_refresh_s)
                deferred = self._net.last_deferred
                if self._net.last_skipped and sid in self._read:
                    self.read_at[sid] = self._read_now[sid] = self._read[sid]
                else:
                    self._read_now[sid] = self._taken_at
                if deferred and sid in self._tc_read:
                    self.tc_read_at[sid] = self._tc_read_now[sid] = self._tc_read[sid]
                else:
                    self._tc_read_now[sid] = self._taken_at
                if self._net.last_notes:
                    changes = _tc_changes(self._net.last_notes, dump)
                    if changes:
                        self.tc_changes[sid] = changes
            except FileNotFoundError:
                errors.append(SandboxError("netns", f"network namespace {path} is gone"))
            except PermissionError:
                errors.append(SandboxError("netns", f"permission denied entering {path} "
                                                    "(needs root)"))
            except OSError as exc:
                errors.append(SandboxError("netns", f"reading {path}: {exc.strerror or exc}"))
        elif rec is not None and not rec.error:
            errors.append(SandboxError("netns", "no network namespace recorded and no live VMM "
                                                "to find it from"))

        vmm_proc_info: ProcInfo | None = None
        if alive and vmm_pid:
            vmm_proc_info = self._procs.info(vmm_pid, HYPERVISOR_NAMES.get(kind, kind))
        shim_pid = pidx.shim.get(sid)
        shim = self._procs.info(shim_pid, "containerd-shim-kata-v2") if shim_pid else None
        shim_monitor = self._shim_monitor(sid, rec) if shim is not None else None
        vfs = self._virtiofsd(sid, rec, pidx)

        target: VmmTarget | None = None
        if alive and vmm_pid:
            target = VmmTarget(sandbox_id=sid, kind=kind, pid=vmm_pid,
                               argv=pidx.cmdlines.get(vmm_pid, ()),
                               vm_dir=self._vm_dir(sid, runtime),
                               api_socket=rec.api_socket if rec else None)
        # An idle sandbox is built once: when everything it is made of is what it was last
        # cycle (the namespace's dump reused as it is, see collectors/netcollect.py), the last
        # Sandbox stands.
        inputs = (rec, sb_state, alive, vmm_pid, kind, netns_info, tuple(errors), vmm_proc_info,
                  shim, shim_monitor, vfs)
        built = self._built.get(sid)
        if (built is not None and dump is not None and dump.qdiscs is built[2]
                and dump.filters is built[3].filters and built[0] == inputs):
            if dump.links is built[1]:
                self._built_now[sid] = built
                return built[3], target
            if deferred and built[3].links is built[1]:
                # A busy sandbox whose tc was not read again: its links are the last ones
                # with new counters, nothing derived from them changes (and the last Sandbox
                # held the dump's links whole, not a `none` sandbox's tap alone).
                sb = evolve(built[3], links=dump.links)
                self._built_now[sid] = (inputs, dump.links, dump.qdiscs, sb)
                return sb, target
        sb = self._build(sid, rec, dump, ns_source, runtime, sb_state, vmm_pid, alive, kind,
                         netns_info, errors, vmm_proc_info, shim, shim_monitor, vfs, target)
        if dump is not None:
            self._built_now[sid] = (inputs, dump.links, dump.qdiscs, sb)
        return sb, target

    def _build(self, sid: str, rec: state.StateRecord | None, dump: NetnsDump | None,
               ns_source: NetnsSource | None, runtime: Runtime, sb_state: SandboxState,
               vmm_pid: int | None, alive: bool, kind: str, netns_info: NetnsInfo,
               errors: list[SandboxError], vmm_proc_info: ProcInfo | None,
               shim: ProcInfo | None, shim_monitor: ShimMonitorState | None,
               vfs: tuple[Virtiofsd, ...],
               target: VmmTarget | None) -> Sandbox:
        links = dump.links if dump else ()
        filters = dump.filters if dump else ()
        tap = derive.find_tap(links, rec.tap_name if rec else None)
        virt = rec.virt_iface if rec and rec.virt_iface else derive.DEFAULT_VIRT
        model = derive.infer_model(rec.model if rec else None, links, filters, tap)
        if dump is not None and model == "none" and ns_source == "proc":
            # `none` often shares the node's namespace: show only this sandbox's tap.
            links = tuple(lk for lk in links if lk.name == tap)
        redirects = derive.redirects(model, filters, tap, virt, dump.qdiscs) if dump else ()
        limits = derive.rate_limits(model, links, dump.qdiscs, dump.classes, tap, virt) \
            if dump else ()
        configured: dict[Direction, int] = {}
        if rec is not None and (rec.rx_rate_bps or rec.tx_rate_bps
                                or (rec.runtime == "go" and not rec.error)):
            # The Go runtime's persist.json always holds both (0 = no limit); runtime-rs
            # records none, so nothing is known there.
            configured = {"in": rec.rx_rate_bps, "out": rec.tx_rate_bps}

        vmm: Vmm | None = None
        if target is None:
            vmm = Vmm(source="none", status="dead" if rec else "unknown",
                      reason="the VMM process is not running" if vmm_pid or rec else None)
        return Sandbox(
            id=sid, runtime=runtime, state=sb_state,
            pod=Pod(name=rec.pod_name if rec else None,
                    namespace=rec.pod_namespace if rec else None,
                    uid=rec.pod_uid if rec else None),
            hypervisor=Hypervisor(kind=HYPERVISOR_NAMES.get(kind, kind), pid=vmm_pid,
                                  alive=alive, path=rec.hypervisor_path if rec else None),
            netns=netns_info, network_model=model, links=links,
            qdiscs=dump.qdiscs if dump else (), classes=dump.classes if dump else (),
            filters=filters, routes=dump.routes if dump else (), redirects=redirects,
            rate_limits=limits,
            configured_rate_limits=configured,
            disable_vhost_net=rec.disable_vhost_net if rec else None,
            config_vcpus=rec.vcpus if rec else None, tap_name=tap,
            guest_mac=rec.guest_mac if rec else None, vmm=vmm, virtiofsd=vfs, shim=shim,
            shim_monitor=shim_monitor, vmm_proc=vmm_proc_info, state_path=rec.path if rec else None,
            errors=tuple(errors),
        )

    def _shim_monitor(self, sid: str, rec: state.StateRecord | None) -> ShimMonitorState | None:
        """The shim's management socket beside the sandbox's state file. A listening one is
        connected to again only every ~SHIM_PROBE_EVERY_S (spread over the sandboxes), with a
        look at its file in between: kata-top does not knock on every shim every second."""
        if rec is None or not rec.path:
            return None
        path = os.path.join(os.path.dirname(rec.path), shimsock.SOCKET_NAME)
        now = time.monotonic()
        last = self._shim_seen.get(sid)
        if last is not None and last[1] == "listening" and now < last[0]:
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    self._shim_now[sid] = last
                    return "listening"
            except OSError:
                pass
        found = shimsock.probe(path)
        spread = 0.5 + zlib.crc32(sid.encode(errors="replace")) % 1000 / 1000
        self._shim_now[sid] = (now + SHIM_PROBE_EVERY_S * spread, found)
        return found

    def _virtiofsd(self, sid: str, rec: state.StateRecord | None,
                   pidx: procs.ProcessIndex) -> tuple[Virtiofsd, ...]:
        pids = list(pidx.virtiofsd.get(sid, []))
        if rec and rec.virtiofsd_pid and rec.virtiofsd_pid not in pids:
            pids.insert(0, rec.virtiofsd_pid)
        out: list[Virtiofsd] = []
        for pid in pids:
            argv = pidx.cmdlines.get(pid) or procs.read_cmdline(pid)
            info = self._procs.info(pid, "virtiofsd") if procs.pid_alive(pid) else None
            if argv and info is not None and pid not in pidx.cmdlines:
                argv = ()  # recorded pid reused by something else
            opts = _virtiofsd_opts(argv)
            rd, wr = self._procs.io(pid) if info else (None, None)
            out.append(Virtiofsd(
                pid=pid, alive=info is not None, socket=opts.get("socket"),
                shared_dir=opts.get("shared_dir"), cache=opts.get("cache"),
                thread_pool_size=int(opts["threads"]) if opts.get("threads", "").isdigit()
                else None,
                rate_limit_flags=tuple(a for a in argv if a.startswith(VIRTIOFSD_RATE_FLAGS)),
                cpu_percent=info.cpu_percent if info else None,
                rss_bytes=info.rss_bytes if info else None,
                threads=info.threads if info else None, read_bytes=rd, write_bytes=wr,
                rlimit_nofile=int(opts["nofile"]) if opts.get("nofile", "").isdigit()
                else None))
        # The C virtiofsd forks a sandboxed child with the same command line: show the parent.
        parents = [v for v in out if v.pid == (rec.virtiofsd_pid if rec else None)]
        return tuple(parents or out[:1])


def _request_seconds() -> float:
    from kata_top.collectors.netlink import request_seconds

    return request_seconds()


def _tc_changes(notes: list[tuple[int, bytes]], dump: NetnsDump) -> list[TcChange]:
    """Filter notifications as changes (qdisc and class ones are seen in the dumps)."""
    from kata_top.collectors.netlink import RTM_DELTFILTER, RTM_NEWTFILTER, TCMSG
    from kata_top.collectors.rtnl import decode_filter, fmt_parent

    names = {lk.ifindex: lk.name for lk in dump.links}
    # One u32 filter is notified as three messages (prio, hash table, key): one change each
    # (added or removed, device, parent, prio), keeping the redirect target if one said it.
    out: dict[tuple[bool, str, str, int], TcChange] = {}
    for mtype, body in notes:
        if mtype not in (RTM_NEWTFILTER, RTM_DELTFILTER) or len(body) < TCMSG.size:
            continue
        _fam, ifindex, _handle, parent, info = TCMSG.unpack_from(body)
        try:
            f = decode_filter(body, names)
        except (ValueError, LookupError, ArithmeticError):
            f = None
        target = next((a.target for a in f.actions if a.kind == "mirred"), None) if f else None
        change = TcChange(added=mtype == RTM_NEWTFILTER, dev=names.get(ifindex, f"if{ifindex}"),
                          parent=fmt_parent(parent), prio=info >> 16, target=target)
        key = (change.added, change.dev, change.parent, change.prio)
        if key not in out or (target and not out[key].target):
            out[key] = change
    return list(out.values())


def _unreadable(sid: str, rec: state.StateRecord | None, netns_path: str | None,
                exc: Exception) -> Sandbox:
    """A sandbox whose collection raised: what its state file said, and the error with the
    path it was reading (the rest of the snapshot is unaffected)."""
    where = f" (namespace {netns_path})" if netns_path else ""
    return Sandbox(
        id=sid, runtime=rec.runtime if rec else "unknown",
        state=kata_state(rec.state) if rec and not rec.error else "corrupt" if rec else "orphan",
        pod=Pod(name=rec.pod_name if rec else None, namespace=rec.pod_namespace if rec else None,
                uid=rec.pod_uid if rec else None),
        hypervisor=Hypervisor(kind=rec.hypervisor or "unknown" if rec else "unknown",
                              pid=rec.hypervisor_pid if rec else None, alive=False),
        netns=NetnsInfo(path=netns_path, inode=None), network_model="unknown",
        state_path=rec.path if rec else None,
        errors=(SandboxError("collect", f"could not read this sandbox{where}: "
                                        f"{type(exc).__name__}: {exc}"[:500]),))


def _with_vmm(sb: Sandbox, vmm: Vmm | None) -> Sandbox:
    """The sandbox with its VMM facts. A VMM seen dead when it was asked, after the sandbox
    was seen alive, died during this collection: the later look wins, so one snapshot never
    says both running and dead."""
    if vmm is None:
        return sb
    if vmm.status == "dead" and sb.hypervisor.alive:
        state = sb.state if sb.state in ("orphan", "corrupt") else "stale"
        return evolve(sb, vmm=vmm, state=state, hypervisor=evolve(sb.hypervisor, alive=False))
    return evolve(sb, vmm=vmm)


def _same_root(named: str | None, root: str) -> bool:
    if named is None:
        return True
    named = os.path.normpath(named)
    # Kata writes /run/vc/... but /var/run is the same directory on every modern distro.
    alias = {"/var/run": "/run"}
    return alias.get(named, named) == alias.get(root, root)


def _virtiofsd_opts(argv: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    it = iter(argv[1:])
    for a in it:
        if a == "-o":
            a = "-o" + next(it, "")
        if a.startswith("--socket-path="):
            out["socket"] = a.split("=", 1)[1]
        elif a.startswith("--shared-dir="):
            out["shared_dir"] = a.split("=", 1)[1]
        elif a.startswith("--cache="):
            out["cache"] = a.split("=", 1)[1]
        elif a.startswith("--thread-pool-size="):
            out["threads"] = a.split("=", 1)[1]
        elif a.startswith("--rlimit-nofile="):
            out["nofile"] = a.split("=", 1)[1]
        elif a == "--rlimit-nofile":
            out["nofile"] = next(it, "")
        elif a.startswith("-o"):
            for part in a[2:].split(","):
                k, _, v = part.partition("=")
                if k == "source":
                    out["shared_dir"] = v
                elif k == "cache":
                    out["cache"] = v
                elif k == "rlimit_nofile":
                    out["nofile"] = v
    return out
