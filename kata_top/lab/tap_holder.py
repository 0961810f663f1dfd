"""A stand-in VMM for one tap: opens a sandbox's tap the way QEMU does and then drains it,
never reads it (a VMM that stopped draining), or writes oversized frames into it (a guest
whose MTU is above the node's). Run as `python -m kata_top.lab.tap_holder NETNS TAP MODE
[FRAME_BYTES]`; it runs until killed (the caller ends it by pid) or its caller dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import sys
import time

from kata_top.collectors import netns

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_MULTI_QUEUE = 0x0002, 0x1000, 0x4000, 0x0100
VNET_HDR = 12  # struct virtio_net_hdr_v1 (what a tap with vnet_hdr expects by default: 10)
MODES = ("drain", "stall", "send")
PR_SET_PDEATHSIG = 1


def open_tap(netns_path: str, tap: str) -> int:
    """The tap's queue, opened in the sandbox's namespace (the lab makes taps with
    `multi_queue vnet_hdr`, as Kata does; the flags must match)."""

    def attach() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        ifr = struct.pack("16sH22x", tap.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
                          | IFF_MULTI_QUEUE)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        return fd

    return netns.run_in(netns_path, attach)


def frame(size: int) -> bytes:
    """An Ethernet frame of `size` bytes (broadcast, IPv4 ethertype) behind a zero vnet hdr."""
    eth = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return bytes(10) + eth + bytes(max(0, size - len(eth)))


def main(argv: list[str]) -> int:
    netns_path, tap, mode = argv[0], argv[1], argv[2]
    size = int(argv[3]) if len(argv) > 3 else 1514
    if mode not in MODES:
        print(f"mode must be one of {', '.join(MODES)}", file=sys.stderr)
        return 2
    netns.load_libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    fd = open_tap(netns_path, tap)
    print("ready", flush=True)
    if mode == "drain":
        while True:
            os.read(fd, 65536)
    elif mode == "send":  # a guest sending, whose VMM also drains what comes in
        data = frame(size)
        os.set_blocking(fd, False)
        while True:
            with contextlib.suppress(OSError):
                os.write(fd, data)
            with contextlib.suppress(OSError):
                while os.read(fd, 65536):
                    pass
            time.sleep(0.002)
    else:
        while True:
            time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
