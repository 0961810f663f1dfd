"""The model's closed sets (`Literal`s) and the functions that map raw values into them."""

from __future__ import annotations

from typing import Literal

Severity = Literal["info", "warning", "critical"]
#: `in` = toward the VM (eth0 → tap), `out` = from the VM (tap → eth0)
Direction = Literal["in", "out"]
#: Kata's Go runtime (`/run/vc/sbs`), runtime-rs (`/run/kata`), or neither (an orphan VMM)
Runtime = Literal["go", "rs", "unknown"]
#: Kata's own states, then kata-top's: `stale` (state left, VMM gone), `orphan` (a VMM with
#: no state), `corrupt` (state unreadable), `unknown` (a state value Kata does not write)
SandboxState = Literal["ready", "running", "paused", "stopped", "stale", "orphan", "corrupt",
                       "unknown"]
KATA_STATES: frozenset[str] = frozenset({"ready", "running", "paused", "stopped"})


def kata_state(raw: str | None) -> SandboxState:
    """Kata's recorded state (absent: running, as runtime-rs writes none); a value Kata does
    not write is `unknown`."""
    if raw is None or raw == "":
        return "running"
    return raw if raw in KATA_STATES else "unknown"  # type: ignore[return-value]
#: Kata's internetworking models; `unknown` when neither state nor tc state tells
NetworkModel = Literal["tcfilter", "macvtap", "none", "unknown"]
#: where the VMM facts came from
VmmSource = Literal["extra-monitor", "qmp", "api", "proc", "none"]
#: QEMU's RunState (QAPI) and Cloud Hypervisor's states, plus `dead` (no process) and
#: `unknown` (not asked, or an answer outside this set)
VmmStatus = Literal["running", "paused", "shutdown", "prelaunch", "inmigrate", "postmigrate",
                    "finish-migrate", "restore-vm", "save-vm", "suspended", "watchdog",
                    "guest-panicked", "internal-error", "io-error", "debug", "colo", "created",
                    "dead", "unknown"]
VMM_STATUSES: frozenset[str] = frozenset(VmmStatus.__args__)  # type: ignore[attr-defined]
MonitorKind = Literal["qmp", "hmp"]


def vmm_status(raw: str) -> VmmStatus:
    """A monitor's or API's answer as a status: values outside the known set are `unknown`
    (the answer is untrusted input; the model never carries what its schema does not allow)."""
    return raw if raw in VMM_STATUSES else "unknown"  # type: ignore[return-value]
NetnsSource = Literal["state", "proc"]
#: the shim's management socket: `listening` (a connection was accepted), `missing`,
#: `refused` (a socket file nobody listens on), `busy` (backlog full), `not-a-socket`,
#: `unreadable` (not root, or another error)
ShimMonitorState = Literal["listening", "missing", "refused", "busy", "not-a-socket",
                           "unreadable"]

EventKind = Literal[
    "sandbox-appeared", "sandbox-disappeared", "vmm-exited", "vmm-restarted",
    "virtiofsd-exited", "redirect-added", "redirect-removed", "rate-limit-set",
    "rate-limit-changed", "rate-limit-cleared", "qdisc-replaced", "mtu-changed", "link-down",
    "link-up", "drops-started", "drops-stopped", "finding-raised", "finding-cleared",
    "filter-added", "filter-removed", "action"]
EventSource = Literal["diff", "netlink", "audit"]
