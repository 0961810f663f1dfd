"""The engine's collection cycle: every sandbox found (state files, /proc), its namespace
read (collectors/netcollect.py), built (sandbox.py), its VMM asked (vmm_cache.py).

A failure in one sandbox (namespace gone, VMM exiting, corrupt state) becomes an error in that
sandbox's section; the rest of the snapshot is complete. Call `collect()` from one thread only:
the netlink sockets it caches belong to the thread that made them.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from kata_top.collectors import netns, procs, state
from kata_top.collectors.vmm_target import VmmTarget
from kata_top.engine import kinds
from kata_top.engine.beside import ShimProbes, virtiofsd
from kata_top.engine.options import READ_AHEAD_MIN_SHARE, Collection, EngineOptions
from kata_top.engine.sandbox import (
    HYPERVISOR_NAMES,
    build_sandbox,
    netns_path,
    resolve_id,
    same_root,
    unreadable,
    with_vmm,
)
from kata_top.engine.vmm_cache import VmmCache
from kata_top.logs import DEBUG, get_logger
from kata_top.model import (
    Finding,
    HostInfo,
    Link,
    NetnsInfo,
    NetnsSource,
    ProcInfo,
    Qdisc,
    Runtime,
    Sandbox,
    SandboxError,
    SandboxState,
    Snapshot,
    TcChange,
    evolve,
    kata_state,
)

if TYPE_CHECKING:
    from kata_top.collectors.netcollect import NetCollector
    from kata_top.collectors.rtnetlink import NetnsDump

_NsPath = tuple[str | None, NetnsSource | None, "netns.NetnsId | None"]
_Built = tuple[tuple[object, ...], tuple[Link, ...], tuple[Qdisc, ...], Sandbox]
log = get_logger(__name__)


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
        self._vmms = VmmCache(opts)
        # per sandbox, the filter changes the kernel notified during the collect() under way
        self._tc_changes: dict[str, list[TcChange]] = {}
        # per sandbox: (its inputs, its dump's links and qdiscs, the Sandbox built from them)
        self._built: dict[str, _Built] = {}
        self._built_now: dict[str, _Built] = {}
        self._shims = ShimProbes()
        # The sandboxes whose tc counters are read every collection whatever
        # tc_busy_refresh_s says (what is on the operator's screen); None: all of them.
        self.watched: frozenset[str] | None = None
        # Per sandbox whose tc counters the collect() under way does not read again: the
        # `taken_at` of the collection that read them (Snapshot.tc_read_at; kata_top/rates.py
        # divides by it). The same for sandboxes not read at all (unwatched_refresh_s): the
        # `taken_at` of the collection that read their links' counters (Snapshot.links_read_at).
        self._tc_read_at: dict[str, float] = {}
        self._links_read_at: dict[str, float] = {}
        # when each sandbox's tc and links were last read: the last collect()'s and this one's
        self._tc_read: dict[str, float] = {}
        self._read: dict[str, float] = {}
        self._read_now: dict[str, float] = {}
        self._tc_read_now: dict[str, float] = {}
        self._taken_at = 0.0  # the collection under way's
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

    def _orphan_findings(self) -> tuple[Finding, ...]:
        """KT-H030 for each named namespace that holds a Kata tap but belongs to no sandbox
        under any known run root (collectors/orphans.py; one link dump per named namespace:
        not every cycle); `ip netns delete` is offered only when no process is in it."""
        from kata_top.collectors.orphans import judge_orphans

        return tuple(judge_orphans(self._named_cache.get(), self._used_ns,
                                   self.opts.run_root))

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

    def collect(self, fresh_vmm: bool = False, orphans: bool = False,
                only: str | None = None) -> Collection:
        """One snapshot. fresh_vmm: ask every VMM now, whatever vmm_refresh_s says;
        orphans: look for namespaces left behind too (Collection.orphan_findings); only: the
        sandbox an operator named (id, unique id prefix, namespace/pod; SelectError when none
        or several): the others are found but not read."""
        t0 = time.monotonic()
        taken_at = self._taken_at = time.time()
        self._tc_changes, self._tc_read_at, self._links_read_at = {}, {}, {}
        found, disc_errors = state.discover(self.opts.run_root)
        root = self.opts.run_root
        records = {sid: self._states.read(sid, path, rt, root=root) for sid, rt, path in found}
        self._states.prune({path for _sid, _rt, path in found})
        t_state = time.monotonic()
        pidx = procs.scan()
        kinds.attach_vmms(pidx, records)  # VMMs the state names no pid of
        t_procs = time.monotonic()
        # A VMM is an orphan of this run root unless its command line names another root
        # (a lab or a rootless Kata beside the node's).
        root = os.path.normpath(self.opts.run_root)
        lost = sorted(sid for sid in set(pidx.vmm) - set(records)
                      if same_root(pidx.vmm_root.get(sid), root))
        # A virtiofsd left with neither state nor VMM (its sandbox is gone) is one too, when
        # its socket path names this run root (it always names one: <root>/vc/vm/<id>/...).
        lost += sorted(sid for sid in set(pidx.virtiofsd) - set(records) - set(pidx.vmm)
                       if sid in pidx.virtiofsd_root
                       and same_root(pidx.virtiofsd_root[sid], root))
        ids = list(records) + lost
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
            path, source = netns_path(rec, pidx.vmm.get(sid))
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
        if only is not None:  # every sandbox's namespace is known, one sandbox is read
            ids = [resolve_id(ids, records, only)]
        self._used_ns = used_ns
        # the names, for the sandboxes' namespaces and the veth peers': none to look up
        # without a sandbox (the orphans' look asks the cache itself, _orphan_findings)
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
                sb, target = unreadable(sid, records.get(sid), ns_paths[sid][0], exc), None
            sandboxes.append(sb)
            if target is not None:
                targets.append(target)
        if net is not None:
            net.end_cycle()
        self._built, self._built_now = self._built_now, {}
        self._tc_read, self._tc_read_now = self._tc_read_now, {}
        self._read, self._read_now = self._read_now, {}
        self._shims.end_cycle()
        t_sb = time.monotonic()
        kernel = _request_seconds() - req0 if net is not None else 0.0

        if self.opts.with_vmm and targets:
            vmms = self._vmms.facts(targets, fresh_vmm)
            sandboxes = [with_vmm(sb, vmms.get(sb.id)) for sb in sandboxes]
        live = set(pidx.cmdlines)
        self._procs.prune(live)
        t_end = time.monotonic()
        # netlink: waiting on the kernel's dumps; sandboxes: decoding them and everything
        # else per sandbox (/proc facts, derivation, building the model)
        timings = {k: round(v * 1000, 2) for k, v in (
            ("state", t_state - t0), ("procs", t_procs - t_state),
            ("namespaces", t_ns - t_procs), ("netlink", kernel),
            ("sandboxes", t_sb - t_ns - kernel), ("vmm", t_end - t_sb))}
        snap = Snapshot(taken_at=taken_at, host=self._host, sandboxes=tuple(sandboxes),
                        errors=tuple(top_errors),
                        duration_ms=round((time.monotonic() - t0) * 1000, 2),
                        links_read_at=self._links_read_at, tc_read_at=self._tc_read_at)
        return Collection(snap, self._tc_changes, timings,
                          net.tc_reused if net is not None else 0,
                          net.skipped if net is not None else 0,
                          self._orphan_findings() if orphans else None)

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
        elif not alive and kind != kinds.REMOTE:  # remote: the VM runs elsewhere
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
                got = self._net.collect(
                    path, ns_id, 0.0 if watched else self.opts.tc_busy_refresh_s,
                    0.0 if watched else self.opts.unwatched_refresh_s)
                dump, deferred = got.dump, got.tc_deferred
                if got.skipped and sid in self._read:
                    self._links_read_at[sid] = self._read_now[sid] = self._read[sid]
                else:
                    self._read_now[sid] = self._taken_at
                if deferred and sid in self._tc_read:
                    self._tc_read_at[sid] = self._tc_read_now[sid] = self._tc_read[sid]
                else:
                    self._tc_read_now[sid] = self._taken_at
                if got.notes:
                    from kata_top.collectors.rtnetlink import tc_changes

                    changes = tc_changes(got.notes, dump.links)
                    if changes:
                        self._tc_changes[sid] = changes
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
        rec = kinds.with_bundle_pod(rec, shim_pid)  # runtime-rs records no pod
        shim = kinds.shim_as_vmm(shim_pid, vmm_pid, vmm_proc_info) or (
            self._procs.info(shim_pid, kinds.SHIM_NAME) if shim_pid else None)
        shim_monitor = self._shims.monitor(sid, rec) if shim is not None else None
        vfs = virtiofsd(self._procs, sid, rec, pidx)

        target: VmmTarget | None = None
        if alive and vmm_pid:
            target = VmmTarget(sandbox_id=sid, kind=kind, pid=vmm_pid,
                               argv=pidx.cmdlines.get(vmm_pid, ()),
                               vm_dir=self._vm_dir(sid, runtime),
                               api_socket=kinds.api_socket(
                                   kind, sid, runtime, self.opts.run_root,
                                   pidx.cmdlines.get(vmm_pid, ()), rec))
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
        sb = build_sandbox(sid, rec, dump, ns_source, runtime, sb_state, vmm_pid, alive, kind,
                         netns_info, errors, vmm_proc_info, shim, shim_monitor, vfs, target)
        if dump is not None:
            self._built_now[sid] = (inputs, dump.links, dump.qdiscs, sb)
        return sb, target

def _request_seconds() -> float:
    from kata_top.collectors.rtnetlink import request_seconds

    return request_seconds()




def read_one(run_root: str, query: str) -> Sandbox:
    """The one sandbox `query` names (id, unique id prefix, namespace/pod), read alone, its
    VMM not asked: the others are found (to resolve the name) but not read. SelectError
    when none or several match."""
    engine = Engine(EngineOptions(run_root=run_root, with_vmm=False))
    try:
        return engine.collect(only=query).snapshot.sandboxes[0]
    finally:
        engine.close()










