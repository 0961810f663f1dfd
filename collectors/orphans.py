"""Network namespaces a Kata sandbox left behind (kata-containers#6339, runtime#1640).

A named namespace (/run/netns) that no sandbox uses but that still holds a Kata tap
(`tap<N>_kata`) that no VMM holds (no carrier) outlived its sandbox: its tap and veth end
stay, and the node keeps both.
Looked at over rtnetlink (link names only) through the same never-creating namespace entry
as everything else; each socket is closed before the next namespace is looked at.
"""

from __future__ import annotations

import glob
import os
import re
import shlex

from kata_top.collectors import netns, state
from kata_top.collectors.rtnetlink import RtnlSocket, link_facts
from kata_top.model import Finding

KATA_TAP_RE = re.compile(r"^tap\d+_kata$")


def orphan_namespaces(named: dict[netns.NetnsId, str], sandbox_ns: set[netns.NetnsId]
                      ) -> list[tuple[str, list[str]]]:
    """(namespace name, its Kata taps) for each named namespace no sandbox of this run root
    uses (see `owners` and `holders` for the rest of the judgement)."""
    out: list[tuple[str, list[str]]] = []
    for nsid, name in sorted(named.items(), key=lambda kv: kv[1]):
        if nsid in sandbox_ns:
            continue
        try:
            sock = RtnlSocket.open(os.path.join(netns.NETNS_RUN_DIR, name))
        except (OSError, ValueError):
            continue  # gone, or not a namespace: nothing to say about it
        try:
            facts = [f for _idx, f in (link_facts(b) for b in sock.dump_links())]
        except (OSError, ValueError):
            continue
        finally:
            sock.close()
        # A tap a VMM holds has carrier (operstate up or unknown); one nobody holds does not:
        # a sandbox of another run root (a lab beside the node) is not taken for an orphan.
        taps = sorted(name for name, _mtu, oper in facts
                      if name and KATA_TAP_RE.match(name) and oper not in ("up", "unknown"))
        if taps:
            out.append((name, taps))
    return out


# Where Kata's state trees can be: the default run root, and any root one level below /run
# (rootless Kata, a second runtime instance, a lab beside the node).
RUN_ROOT_GLOBS = ("/run", "/run/*")


def known_run_roots(own: str) -> list[str]:
    roots = {os.path.normpath(own)}
    for pattern in RUN_ROOT_GLOBS:
        for root in glob.glob(pattern):
            if os.path.isdir(os.path.join(root, "vc", "sbs")) or \
                    os.path.isdir(os.path.join(root, "kata")):
                roots.add(os.path.normpath(root))
    return sorted(roots)


def owners(nsids: set[netns.NetnsId], own_root: str) -> dict[netns.NetnsId, str]:
    """Which of these namespaces a sandbox recorded under any known run root uses: its state
    file's path (a namespace named there belongs to that sandbox, never an orphan)."""
    out: dict[netns.NetnsId, str] = {}
    if not nsids:
        return out
    for root in known_run_roots(own_root):
        found, _errors = state.discover(root)
        for sid, runtime, path in found:
            rec = state.read_state_file(sid, path, runtime, retries=0, root=root)
            if not rec.netns_path:
                continue
            try:
                nsid = netns.netns_id(rec.netns_path)
            except (OSError, ValueError):
                continue
            if nsid in nsids:
                out.setdefault(nsid, path)
    return out


def holders(nsids: set[netns.NetnsId]) -> dict[netns.NetnsId, list[int]]:
    """The processes whose network namespace is one of these (what `ip netns pids` tells):
    a namespace a process is in is not for `ip netns delete`."""
    out: dict[netns.NetnsId, list[int]] = {}
    if not nsids:
        return out
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        nsid = netns.NetnsId(st.st_dev, st.st_ino)
        if nsid in nsids:
            out.setdefault(nsid, []).append(pid)
    return out


def judge_orphans(named: dict[netns.NetnsId, str], sandbox_ns: set[netns.NetnsId],
                  run_root: str) -> list[Finding]:
    """KT-H030 for each named namespace with a Kata tap nobody holds that no sandbox under
    any known run root records; a namespace a process is still in is named, without
    `ip netns delete` (what would free it is that process)."""
    found = orphan_namespaces(named, sandbox_ns)
    if not found:
        return []
    ids = {nsid for nsid, name in named.items() if name in {n for n, _t in found}}
    owned = owners(ids, run_root)
    held = holders(ids - set(owned))
    by_name = {name: nsid for nsid, name in named.items()}
    out = []
    for name, taps in found:
        nsid = by_name[name]
        if nsid in owned:
            continue  # another run root's sandbox: not ours to judge, never an orphan
        pids = held.get(nsid, [])
        if pids:
            fix = (f"processes {', '.join(map(str, pids[:5]))} are still in it (ip netns pids "
                   f"{shlex.quote(name)}): find who owns them first; deleting the name now "
                   "would leave them in a namespace nobody can find")
        else:
            fix = f"if no pod owns it (crictl pods): ip netns delete {shlex.quote(name)}"
        out.append(Finding(
            code="KT-H030", severity="warning",
            summary=f"network namespace {name} holds {', '.join(taps)} but no Kata sandbox "
                    "under any known run root uses it: left behind by a sandbox that no "
                    "longer exists", evidence={"netns": name, "taps": taps, "pids": pids},
            fix=fix))
    return out
