"""Real traffic from the lab's node namespace to every sandbox: UDP at a rate, and ICMP echo.

Sockets are created inside the node namespace and then used from this thread, so packets
leave through the node's bridge and veths and cross the sandboxes' tc redirects.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from kata_top.collectors import netns

DISCARD_PORT = 9


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _echo_request(ident: int, seq: int) -> bytes:
    payload = b"kata-top-lab" + bytes(20)
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq) + payload


@dataclass
class TrafficResult:
    ip: str
    udp_sent: int = 0
    pings_sent: int = 0
    ping_replies: int = 0


def run(node_netns: str, ips: list[str], seconds: float, rate_pps: int,
        payload_bytes: int = 512, ping_every: float = 0.5) -> dict[str, TrafficResult]:
    """Send UDP to each ip at rate_pps and a ping every ping_every s; seconds=0 runs forever."""

    def make() -> tuple[socket.socket, socket.socket]:
        return (socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))

    udp, icmp = netns.run_in(f"/run/netns/{node_netns}", make)
    udp.setblocking(False)
    poller = select.poll()
    poller.register(icmp, select.POLLIN)
    results = {ip: TrafficResult(ip) for ip in ips}
    ident = os.getpid() & 0xFFFF
    seq = 0
    payload = bytes(payload_bytes)
    start = time.monotonic()
    next_ping = start
    interval = 1.0 / rate_pps if rate_pps > 0 else None
    next_udp = start
    try:
        while seconds <= 0 or time.monotonic() - start < seconds:
            now = time.monotonic()
            if interval is not None and now >= next_udp:
                for ip in ips:
                    try:
                        udp.sendto(payload, (ip, DISCARD_PORT))
                        results[ip].udp_sent += 1
                    except (BlockingIOError, OSError):
                        pass
                next_udp += interval
                if next_udp < now - 1:
                    next_udp = now  # we fell behind (busy machine): do not burst to catch up
            if now >= next_ping:
                seq = (seq + 1) & 0xFFFF
                for ip in ips:
                    try:
                        icmp.sendto(_echo_request(ident, seq), (ip, 0))
                        results[ip].pings_sent += 1
                    except OSError:
                        pass
                next_ping += ping_every
            wake = min(next_ping, next_udp if interval is not None else next_ping)
            timeout = max(0.0, wake - time.monotonic())
            # poll, not select: beside an engine with a socket per namespace (a 1,000-sandbox
            # test) this socket's number can pass select's 1,024
            if poller.poll(timeout * 1000):
                data, (src, _port) = icmp.recvfrom(2048)
                ihl = (data[0] & 0x0F) * 4
                if len(data) >= ihl + 8:
                    itype, _code, _ck, rid, _rseq = struct.unpack_from("!BBHHH", data, ihl)
                    if itype == 0 and rid == ident and src in results:
                        results[src].ping_replies += 1
    finally:
        udp.close()
        icmp.close()
    return results
