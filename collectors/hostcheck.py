"""Host findings: device nodes, kernel capabilities proven in a scratch namespace, Kata config.

The capability probe runs `ip`/`tc` inside `unshare --net`: an anonymous namespace that exists
only while the probe runs and vanishes with it, so nothing is left behind. The ifb test runs
only when the ifb module is already loaded, because loading it creates ifb0/ifb1 in the root
namespace.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tomllib
from typing import Any

from msgspec import Struct

from kata_top.collectors.safeopen import read_file
from kata_top.model import Finding

CONFIG_PATHS = (
    "/etc/kata-containers/configuration.toml",
    "/opt/kata/share/defaults/kata-containers/configuration.toml",
    "/usr/share/defaults/kata-containers/configuration.toml",
)
# runtime-rs reads its own configuration (kata-containers src/runtime-rs/config/)
RS_CONFIG_PATHS = (
    "/etc/kata-containers/runtime-rs/configuration.toml",
    "/opt/kata/share/defaults/kata-containers/runtime-rs/configuration.toml",
    "/usr/share/defaults/kata-containers/runtime-rs/configuration.toml",
)
GO_MONITORS = ("hmp", "qmp", "qmp-pretty")  # govmm's MonitorProtocol values Kata accepts

class ProbeResult(Struct, frozen=True):
    name: str
    ok: bool
    detail: str


# (name, shell snippet run in the scratch namespace, severity if missing, why Kata needs it)
PROBES: tuple[tuple[str, str, str, str], ...] = (
    ("tun", "ip tuntap add dev kt0 mode tap && ip link set kt0 up", "critical",
     "every Kata NIC is a tap"),
    ("veth", "ip link add ktv0 type veth peer name ktv1", "critical", "pod networking"),
    ("sch_ingress", "tc qdisc add dev ktv0 ingress", "critical", "tcfilter model"),
    ("cls_u32+act_mirred", "tc filter add dev ktv0 parent ffff: protocol all u32 match u8 0 0 "
     "action mirred egress redirect dev ktv1", "critical", "tcfilter model's redirects"),
    ("sch_htb", "tc qdisc add dev ktv1 root handle 1: htb default 2", "warning",
     "rx/tx rate limiters"),
    ("macvtap", "ip link add link ktv0 name ktm0 type macvtap mode bridge", "warning",
     "macvtap model"),
)
MODULE_HINT = {"tun": "tun", "veth": "veth", "sch_ingress": "sch_ingress",
               "cls_u32+act_mirred": "cls_u32 act_mirred", "sch_htb": "sch_htb",
               "macvtap": "macvtap", "ifb": "ifb"}
# The kernel option each probe needs, and what Kata's network setup (kata-containers
# src/runtime/virtcontainers/network_linux.go, through vishvananda/netlink) then reports:
# the kernel's errno text, wrapped. A missing qdisc, classifier or action kind is ENOENT
# ("no such file or directory"), a missing link type EOPNOTSUPP ("operation not supported").
KERNEL_OPTION = {"tun": "CONFIG_TUN", "veth": "CONFIG_VETH",
                 "sch_ingress": "CONFIG_NET_SCH_INGRESS",
                 "cls_u32+act_mirred": "CONFIG_NET_CLS_U32 and CONFIG_NET_ACT_MIRRED",
                 "sch_htb": "CONFIG_NET_SCH_HTB", "macvtap": "CONFIG_MACVTAP",
                 "ifb": "CONFIG_IFB"}
KATA_ERROR = {"tun": "open /dev/net/tun: no such file or directory",
              "veth": "operation not supported",
              "sch_ingress": "no such file or directory",
              "cls_u32+act_mirred": "no such file or directory",
              "sch_htb": "no such file or directory",
              "macvtap": "operation not supported", "ifb": "operation not supported"}
# Kata opens its netlink handle on the pod's namespace with netlink.NewHandleAt, which opens a
# socket of every family vishvananda/netlink supports (nl/nl_linux.go: SupportedNlFamilies =
# NETLINK_ROUTE, NETLINK_XFRM, NETLINK_NETFILTER) and fails whole on the first the kernel
# lacks: "Fail to get network endpoints number: err: protocol not supported" (seed 000).
NETLINK_FAMILIES: tuple[tuple[str, int, str], ...] = (
    ("netlink-xfrm", 6, "CONFIG_XFRM_USER"),
    ("netlink-netfilter", 12, "CONFIG_NETFILTER_NETLINK"),
)
NETLINK_KATA_ERROR = "Fail to get network endpoints number: err: protocol not supported"


def probe_netlink(open_socket: Any = None) -> list[ProbeResult]:
    """Whether the kernel has each netlink family Kata's netlink handle opens. Opening and
    closing a socket changes nothing (the kernel may load the family's module on demand, as
    it would for Kata)."""
    import socket

    def default(proto: int) -> None:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, proto).close()

    opener = open_socket or default
    out = []
    for name, proto, _opt in NETLINK_FAMILIES:
        try:
            opener(proto)
            out.append(ProbeResult(name, True, ""))
        except OSError as exc:
            out.append(ProbeResult(name, False, (exc.strerror or str(exc)).lower()))
    return out


def probe_kernel() -> list[ProbeResult]:
    if shutil.which("unshare") is None or shutil.which("tc") is None:
        return [ProbeResult("probe", False, "unshare or tc not installed (util-linux, iproute2)")]
    script = "ip link set lo up\n" + "".join(
        f'if out=$( ({cmd}) 2>&1); then echo "OK {name}"; else echo "FAIL {name} $out"; fi\n'
        for name, cmd, _sev, _why in PROBES)
    if os.path.isdir("/sys/module/ifb"):
        script += ('if out=$(ip link add ktifb0 type ifb 2>&1); then echo "OK ifb"; '
                   'else echo "FAIL ifb $out"; fi\n')
    try:
        proc = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [ProbeResult("probe", False, f"scratch namespace probe failed: {exc}")]
    if proc.returncode != 0 and not proc.stdout:
        return [ProbeResult("probe", False, proc.stderr.strip() or "unshare failed")]
    out: list[ProbeResult] = []
    for line in proc.stdout.splitlines():
        status, _, rest = line.partition(" ")
        name, _, detail = rest.partition(" ")
        out.append(ProbeResult(name, status == "OK", detail.strip()))
    return out


def read_kata_config(paths: tuple[str, ...] | None = None
                     ) -> tuple[str | None, dict[str, Any]]:
    """The first Kata configuration.toml found (path, parsed), or (None, {}). KATA_CONF_FILE
    names it, as it does for Kata's runtime."""
    if paths is None:
        env = os.environ.get("KATA_CONF_FILE")
        paths = (env,) if env else CONFIG_PATHS
    for path in paths:
        try:
            return path, tomllib.loads(read_file(path, 4 << 20).decode("utf-8", "replace"))
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError, RecursionError) as exc:
            return path, {"_error": str(exc)}
    return None, {}


def _dev_usable(path: str) -> tuple[bool, str]:
    """Whether a device node exists, is a character device and opens read-write (what QEMU
    and Kata do with it). Never blocks: O_NONBLOCK, and a FIFO in its place is refused."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False, "missing"
    except OSError as exc:
        return False, exc.strerror or str(exc)
    if not stat.S_ISCHR(st.st_mode):
        return False, "not a character device"
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        os.close(fd)
        return True, "ok"
    except OSError as exc:
        return False, exc.strerror or str(exc)


def host_findings(dev_root: str = "/", probe: bool = True,
                  config_paths: tuple[str, ...] | None = None,
                  netlink_results: list[ProbeResult] | None = None) -> list[Finding]:
    """The node's findings. dev_root/probe/config_paths let tests describe a host (a node with
    or without /dev/vhost-net) without being one."""
    out: list[Finding] = []
    cfg_path, cfg = read_kata_config(config_paths)
    qemu_cfg: dict[str, Any] = cfg.get("hypervisor", {}).get("qemu", {}) if cfg else {}
    disable_vhost = qemu_cfg.get("disable_vhost_net")

    ok, why = _dev_usable(os.path.join(dev_root, "dev/vhost-net"))
    if not ok:
        crit = cfg_path is not None and disable_vhost is False
        out.append(Finding(
            code="KT-H002", severity="critical" if crit else "warning",
            summary=f"/dev/vhost-net is {why}: a sandbox that uses vhost-net "
                    "(DisableVhostNet false, Kata's default) fails with \"Could not setup "
                    "vhost fds eth0 : open /dev/vhost-net: no such file or directory\""
                    + (" (configuration has disable_vhost_net = false)" if crit else ""),
            evidence={"device": "/dev/vhost-net", "state": why, "config": cfg_path,
                      "disable_vhost_net": disable_vhost, "kernel_option": "CONFIG_VHOST_NET"},
            fix="modprobe vhost_net (and add it to /etc/modules-load.d/), or set "
                "disable_vhost_net = true in [hypervisor.qemu]"))
    for dev, code, sev, fix in (
            ("/dev/kvm", "KT-H001", "critical", "enable virtualisation (BIOS, nested) and "
             "modprobe kvm_intel or kvm_amd"),
            ("/dev/vhost-vsock", "KT-H003", "warning", "modprobe vhost_vsock"),
            ("/dev/net/tun", "KT-H004", "critical", "modprobe tun")):
        ok, why = _dev_usable(os.path.join(dev_root, dev.lstrip("/")))
        if not ok:
            out.append(Finding(code=code, severity=sev,  # type: ignore[arg-type]
                               summary=f"{dev} is {why}", evidence={"device": dev,
                                                                    "state": why}, fix=fix))
    for res in probe_kernel() if probe else ():
        if res.ok:
            continue
        known = next((p for p in PROBES if p[0] == res.name), None)
        sev = known[2] if known else "warning"
        why = known[3] if known else "kata-top's kernel probe"
        option = KERNEL_OPTION.get(res.name)
        kata = KATA_ERROR.get(res.name)
        out.append(Finding(
            code="KT-H010", severity=sev,  # type: ignore[arg-type]
            summary=f"kernel cannot do {res.name}" + (f" ({option})" if option else "")
                    + f", needed for {why}: {res.detail}"
                    + (f"; Kata's setup fails with `{kata}`" if kata else ""),
            evidence={"capability": res.name, "kernel_said": res.detail,
                      "kernel_option": option, "kata_error": kata},
            fix=f"modprobe {MODULE_HINT.get(res.name, res.name)}, or build the kernel with "
                f"{option or 'it'}=m (or y)"))
    for res in netlink_results if netlink_results is not None else \
            (probe_netlink() if probe else ()):
        if res.ok:
            continue
        option = next(o for n, _p, o in NETLINK_FAMILIES if n == res.name)
        out.append(Finding(
            code="KT-H011", severity="critical",
            summary=f"kernel lacks {res.name.replace('-', ' ')} ({option}): opening it says "
                    f"`{res.detail}`, and Kata fails every pod network with "
                    f"`{NETLINK_KATA_ERROR}` (its netlink handle opens route, xfrm and "
                    "netfilter sockets in the pod's namespace)",
            evidence={"family": res.name, "kernel_option": option, "kernel_said": res.detail,
                      "kata_error": NETLINK_KATA_ERROR},
            fix=f"build the host kernel with {option}=m (or y), reboot into it; until then "
                "only internetworking_model = \"none\" with disable_new_netns = true works"))
    if cfg_path is None:
        out.append(Finding(code="KT-H020", severity="info",
                           summary="no Kata configuration.toml found",
                           evidence={"looked_in": list(CONFIG_PATHS)},
                           fix="nothing to do on a node without Kata (e.g. the lab)"))
    elif "_error" in cfg:
        out.append(Finding(code="KT-H021", severity="warning",
                           summary=f"{cfg_path} does not parse: {cfg['_error']}",
                           evidence={"config": cfg_path}, fix="fix the TOML syntax"))
    else:
        out += monitor_config_findings(cfg_path, cfg)
    if config_paths is None and not os.environ.get("KATA_CONF_FILE"):
        rs_path, rs_cfg = read_kata_config(RS_CONFIG_PATHS)
        if rs_path is not None and "_error" not in rs_cfg:
            out += [f for f in monitor_config_findings(rs_path, rs_cfg) if f.code != "KT-H022"]
    return out


def monitor_config_findings(path: str, cfg: dict[str, Any]) -> list[Finding]:
    """What Kata does with [hypervisor.qemu]'s extra_monitor_socket and enable_debug, read
    from its source (kata-containers: src/runtime/virtcontainers/qemu.go and
    pkg/katautils/config.go for the Go runtime; src/runtime-rs/crates/hypervisor/src/qemu/
    cmdline_generator.rs for runtime-rs, whose configuration path says runtime-rs)."""
    qemu = cfg.get("hypervisor", {}).get("qemu", {})
    monitor, debug = qemu.get("extra_monitor_socket"), qemu.get("enable_debug")
    runtime = "runtime-rs" if "runtime-rs" in path else "the Go runtime"
    ev = {"config": path, "extra_monitor_socket": monitor, "enable_debug": debug,
          "runtime": runtime}
    if runtime == "the Go runtime" and monitor and monitor not in GO_MONITORS:
        return [Finding(
            code="KT-H024", severity="critical",
            summary=f"{path}: extra_monitor_socket = {monitor!r} is refused by Kata: every new "
                    f"sandbox fails with \"Invalid hypervisor extra monitor socket {monitor} "
                    f"specified (supported values: [hmp qmp qmp-pretty])\"", evidence=ev,
            fix='extra_monitor_socket = "qmp" (or "" to have none) in [hypervisor.qemu]')]
    if monitor and not debug:
        return [Finding(
            code="KT-H023", severity="warning",
            summary=f"{path}: extra_monitor_socket = {monitor!r} is ignored: {runtime} adds "
                    "the extra monitor only with enable_debug = true, so no sandbox gets one",
            evidence=ev, fix="enable_debug = true in [hypervisor.qemu] (debug only: the "
                             "extra monitor gives full control of QEMU)")]
    if runtime == "runtime-rs" and monitor and monitor != "hmp":
        return [Finding(
            code="KT-H025", severity="critical",
            summary=f"{path}: runtime-rs binds the extra {monitor} monitor on qmp.sock, the "
                    "path of the primary QMP socket it bound a moment before: the bind fails "
                    "(\"unix listener bind failed\") and every new sandbox fails to start",
            evidence=ev, fix='extra_monitor_socket = "hmp" (runtime-rs then adds '
                             'debug-monitor.sock) or "" in [hypervisor.qemu]')]
    if not monitor or not debug:
        return [Finding(
            code="KT-H022", severity="info",
            summary="Kata has no usable extra monitor: kata-top reads VMMs from /proc only",
            evidence=ev,
            fix='extra_monitor_socket = "qmp" and enable_debug = true in [hypervisor.qemu]')]
    return []
