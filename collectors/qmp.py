"""Ask a QEMU monitor about the VM, within a deadline, and let go at once.

QEMU serves one monitor client at a time and Kata's shim holds `qmp.sock` for the VM's life,
so a second client is accepted by the kernel but never greeted. Every exchange here runs under
one `asyncio.wait_for` deadline covering connect, greeting and all commands; the connection is
closed in `finally`. A monitor that does not greet in time is `busy`, not dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from typing import Any

from msgspec import Struct, field

from kata_top.logs import ensure as ensure_logging
from kata_top.model import MonitorKind, VmmNic

# qemu.qmp logs every failed connection at WARNING; our callers report them as data instead.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
logging.getLogger("qemu.qmp").propagate = False
# asyncio logs through the root logger's handlers: a deferred setup is carried out first
ensure_logging()

PCI_NAMES = {
    0x1000: "virtio-net", 0x1041: "virtio-net", 0x105A: "vhost-user-fs", 0x1053: "vhost-vsock",
    0x1012: "vhost-vsock", 0x1003: "virtio-serial", 0x1043: "virtio-serial",
    0x1001: "virtio-blk", 0x1042: "virtio-blk", 0x1004: "virtio-scsi", 0x1048: "virtio-scsi",
    0x1005: "virtio-rng", 0x1044: "virtio-rng", 0x1002: "virtio-balloon",
    0x1045: "virtio-balloon",
}
HMP_PROMPT = b"(qemu) "


class MonitorBusy(Exception):
    """Accepted but never greeted: another client (Kata's shim) holds the monitor."""


class MonitorError(Exception):
    pass


class MonitorFacts(Struct):
    kind: MonitorKind
    status: str = "unknown"
    name: str | None = None
    version: str | None = None
    vcpus: int | None = None
    vcpu_threads: list[int] = field(default_factory=list)
    memory_bytes: int | None = None
    plugged_memory_bytes: int | None = None
    nics: list[VmmNic] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    chardevs: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0


# ---- answers are untrusted input: typed at the boundary, never passed through ----------
MAX_TEXT = 256


def _text(value: Any) -> str | None:
    """A short printable string, or None (a dict as a status, an int as a name: None)."""
    if not isinstance(value, str):
        return None
    return "".join(c if c.isprintable() else "?" for c in value[:MAX_TEXT])


def _count(value: Any, limit: int = 1 << 62) -> int | None:
    """A non-negative int below `limit` (bools, strings like "lots", floats: None)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        return None
    return value


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _table_len(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def _pci_devices(ret: Any) -> list[str]:
    names: list[str] = []
    for bus in ret if isinstance(ret, list) else []:
        for dev in bus.get("devices", []) if isinstance(bus, dict) else []:
            if not isinstance(dev, dict):
                continue
            did = dev.get("id", {}).get("device") if isinstance(dev.get("id"), dict) else None
            if isinstance(did, int) and did in PCI_NAMES:
                names.append(PCI_NAMES[did])
            for sub in (dev.get("pci_bridge", {}) or {}).get("devices", []) or []:
                sid = sub.get("id", {}).get("device") if isinstance(sub, dict) else None
                if isinstance(sid, int) and sid in PCI_NAMES:
                    names.append(PCI_NAMES[sid])
    return names


_INFO_NET_NIC = re.compile(r"^(\S+): index=\d+,type=nic,model=([^,]+),macaddr=([0-9a-f:]+)",
                           re.MULTILINE)
_INFO_NET_BACKEND = re.compile(r"^ \\ (\S+): index=\d+,type=(\w+),(.*)$", re.MULTILINE)


def parse_info_network(text: str) -> list[VmmNic]:
    """HMP `info network`: each NIC line is followed by its backend line (`\\ netdev: ...`)."""
    nics: list[VmmNic] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _INFO_NET_NIC.match(line)
        if not m:
            continue
        netdev = tap = None
        fds: tuple[int, ...] = ()
        if i + 1 < len(lines):
            b = _INFO_NET_BACKEND.match(lines[i + 1])
            if b:
                netdev = b.group(1)
                rest = b.group(3)
                t = re.search(r"ifname=([^,\s]+)", rest)
                tap = t.group(1) if t else None
                f = re.search(r"fd=(\d+)", rest)
                fds = (int(f.group(1)),) if f else ()
        nics.append(VmmNic(netdev=netdev, mac=m.group(3).lower(), model=m.group(2), tap=tap,
                           fds=fds))
    return nics


async def _qmp_session(client: Any) -> MonitorFacts:
    from qemu.qmp import ExecuteError

    facts = MonitorFacts(kind="qmp")
    greeting: Any = getattr(client, "greeting", None)
    try:
        v = greeting.QMP.version.qemu  # qemu.qmp's Greeting model
        facts.version = f"{v.major}.{v.minor}.{v.micro}"
    except AttributeError:
        pass

    async def call(cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await client.execute(cmd, args)
        except ExecuteError as exc:
            raise MonitorError(f"{cmd}: {exc}") from exc

    st = await call("query-status")
    facts.status = (_text(st.get("status")) if isinstance(st, dict) else None) or "unknown"
    nm = await call("query-name")
    facts.name = _text(nm.get("name")) if isinstance(nm, dict) else None
    cpus = await call("query-cpus-fast")
    if isinstance(cpus, list):
        facts.vcpus = _count(len(cpus), 1 << 16)
        facts.vcpu_threads = [t for c in cpus if isinstance(c, dict)
                              and (t := _count(c.get("thread-id"), 1 << 32)) is not None]
    mem = await call("query-memory-size-summary")
    if isinstance(mem, dict):
        facts.memory_bytes = _count(mem.get("base-memory"))
        facts.plugged_memory_bytes = _count(mem.get("plugged-memory"))
    facts.devices = _pci_devices(await call("query-pci"))
    chardevs = await call("query-chardev")
    facts.chardevs = [_text(c.get("label")) or "?" for c in chardevs if isinstance(c, dict)] \
        if isinstance(chardevs, list) else []
    info_net = await call("human-monitor-command", {"command-line": "info network"})
    nics = parse_info_network(info_net if isinstance(info_net, str) else "")
    rx = await call("query-rx-filter")
    filters = {_text(r.get("name")): r for r in rx if isinstance(r, dict)} \
        if isinstance(rx, list) else {}
    merged: list[VmmNic] = []
    for nic in nics:
        rf: dict[str, Any] | None = None
        for name, r in filters.items():
            mac = _text(r.get("main-mac"))
            if mac is not None and mac.lower() == nic.mac:
                # Never carry the 4096-entry vlan table: summarise what matters.
                rf = {"name": name, "promiscuous": _flag(r.get("promiscuous")),
                      "main_mac": mac,
                      "multicast_table": _table_len(r.get("multicast-table")),
                      "unicast_table": _table_len(r.get("unicast-table")),
                      "vlan_table": _table_len(r.get("vlan-table"))}
                break
        merged.append(VmmNic(netdev=nic.netdev, mac=nic.mac, model=nic.model, tap=nic.tap,
                             fds=nic.fds, rx_filter=rf))
    facts.nics = merged
    return facts


async def _hmp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cmd: str) -> str:
    writer.write(cmd.encode() + b"\n")
    await writer.drain()
    out = await reader.readuntil(HMP_PROMPT)
    text = out[: -len(HMP_PROMPT)].decode(errors="replace").replace("\r", "")
    lines = text.split("\n")
    if lines and cmd in lines[0]:
        lines = lines[1:]  # the echoed command
    return "\n".join(lines)


async def _hmp_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       greeting: bytes) -> MonitorFacts:
    facts = MonitorFacts(kind="hmp")
    m = re.search(rb"QEMU (\d+\.\d+\.\d+)", greeting)
    facts.version = m.group(1).decode() if m else None
    await reader.readuntil(HMP_PROMPT)
    st = await _hmp(reader, writer, "info status")
    m2 = re.search(r"VM status: (\w+)", st)
    facts.status = m2.group(1) if m2 else "unknown"
    nm = await _hmp(reader, writer, "info name")
    facts.name = _text(nm.strip()) or None
    cpus = await _hmp(reader, writer, "info cpus")
    facts.vcpu_threads = [t for x in re.findall(r"thread_id=(\d{1,10})", cpus)
                          if (t := _count(int(x), 1 << 32)) is not None]
    facts.vcpus = len(facts.vcpu_threads) or None
    facts.nics = parse_info_network(await _hmp(reader, writer, "info network"))
    return facts


async def _wait_readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


async def query_monitor(path: str, deadline_s: float) -> MonitorFacts:
    """Connect, recognise QMP or HMP by the greeting, ask, disconnect — all within deadline_s.

    The greeting is peeked (MSG_PEEK), not consumed, so a QMP monitor is handed as it is to
    qemu.qmp and an HMP one is spoken to directly, on the same single connection.
    """
    # Imported here: a node without extra monitors never pays for qemu.qmp.
    from qemu.qmp import QMPClient, QMPError

    start = time.monotonic()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                         | socket.SOCK_CLOEXEC)
    client: Any = None
    writer: asyncio.StreamWriter | None = None
    greeted = False

    async def session() -> MonitorFacts:
        nonlocal client, writer, greeted
        await asyncio.get_running_loop().sock_connect(sock, path)
        await _wait_readable(sock)
        head = sock.recv(64, socket.MSG_PEEK)
        greeted = True
        if not head:
            raise MonitorError("monitor closed the connection before greeting")
        if head.lstrip().startswith(b"{"):
            client = QMPClient("kata-top")
            await client.connect(sock)
            return await _qmp_session(client)
        if head.startswith(b"QEMU"):
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 22)
            first = await reader.readuntil(b"\n")
            return await _hmp_session(reader, writer, first)
        raise MonitorError(f"not a QEMU monitor: greeted with {head[:40]!r}")

    try:
        facts = await asyncio.wait_for(session(), timeout=deadline_s)
    except TimeoutError as exc:
        if not greeted:
            raise MonitorBusy(f"no greeting within {deadline_s * 1000:.0f} ms") from exc
        raise MonitorError(f"monitor did not answer within {deadline_s * 1000:.0f} ms") from exc
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        raise MonitorError(f"nothing listening on {path}: {exc.strerror}") from exc
    except asyncio.IncompleteReadError as exc:
        raise MonitorError("monitor closed the connection") from exc
    except asyncio.LimitOverrunError as exc:
        raise MonitorError("monitor sent an over-long line") from exc
    except (QMPError, ValueError) as exc:
        raise MonitorError(f"monitor spoke something that is not QMP: {exc}") from exc
    except OSError as exc:
        raise MonitorError(f"monitor socket error: {exc.strerror or exc}") from exc
    finally:
        if client is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(client.disconnect(), 0.2)
        if writer is not None:
            writer.close()
        sock.close()
    facts.elapsed_ms = (time.monotonic() - start) * 1000
    return facts
