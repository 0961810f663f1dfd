"""The lab's tiny guest: Debian's cloud kernel (downloaded, unpacked, never installed) and a
busybox initramfs built here, whose init takes the pod IP from the kernel command line.

Cached under /var/cache/kata-top-lab (kept across `lab down`; delete it to rebuild).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

from kata_top.lab.layout import GUEST_CACHE
from kata_top.lab.network import LabError

MODULES = ("virtio.ko", "virtio_ring.ko", "virtio_pci_legacy_dev.ko",
           "virtio_pci_modern_dev.ko", "virtio_pci.ko", "failover.ko", "net_failover.ko",
           "virtio_net.ko")
BUSYBOX = "/bin/busybox"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "kata-top lab guest: loading virtio modules"
# Their dependency order is not the obvious one: retry until all are in.
for round in 1 2 3 4 5 6; do
  for m in /lib/modules/*.ko; do insmod "$m" 2>/dev/null; done
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip=$(sed -n 's/.*kata_top_ip=\([^ ]*\).*/\1/p' /proc/cmdline)
ip link set lo up
ip link set eth0 up
[ -n "$ip" ] && ip addr add "$ip" dev eth0
echo "kata-top lab guest: eth0 $ip up"
while true; do sleep 3600; done
"""


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio 'newc' archive: (path, mode, data); directories and symlinks by mode."""
    out = bytearray()
    ino = 1
    for name, mode, data in [*entries, ("TRAILER!!!", 0, b"")]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out += hdr.encode() + nb
        out += b"\0" * ((-len(out)) % 4)
        out += data
        out += b"\0" * ((-len(out)) % 4)
        ino += 1
    return bytes(out)


def _kernel_package() -> str:
    proc = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"],
                          capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[-1]
    raise LabError("cannot resolve linux-image-cloud-amd64 (run apt-get update first)")


def prepare_guest(cache: str = GUEST_CACHE) -> tuple[str, str]:
    """(kernel path, initrd path), building them once."""
    kernel = os.path.join(cache, "vmlinuz")
    initrd = os.path.join(cache, "initrd.img")
    if os.path.exists(kernel) and os.path.exists(initrd):
        return kernel, initrd
    if not os.path.exists(BUSYBOX):
        raise LabError("busybox is not installed; apt-get install busybox-static")
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        pkg = _kernel_package()
        dl = subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True,
                            text=True, check=False)
        debs = glob.glob(os.path.join(tmp, "*.deb"))
        if dl.returncode != 0 or not debs:
            raise LabError(f"apt-get download {pkg} failed: {dl.stderr.strip()[-300:]}")
        root = os.path.join(tmp, "x")
        subprocess.run(["dpkg-deb", "-x", debs[0], root], check=True)
        vmlinuz = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
        if not vmlinuz:
            raise LabError(f"{pkg} holds no kernel image")
        entries: list[tuple[str, int, bytes]] = [
            (d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules")]
        with open(BUSYBOX, "rb") as fh:
            entries.append(("bin/busybox", 0o100755, fh.read()))
        entries.append(("bin/sh", 0o120777, b"busybox"))
        entries.append(("init", 0o100755, INIT.encode()))
        for i, name in enumerate(MODULES):
            found = glob.glob(os.path.join(root, "lib", "modules", "*", "kernel", "**", name),
                              recursive=True)
            if not found:
                raise LabError(f"module {name} not found in {pkg}")
            with open(found[0], "rb") as fh:
                entries.append((f"lib/modules/{i:02d}-{name}", 0o100644, fh.read()))
        shutil.copy(vmlinuz[0], kernel + ".tmp")
        with open(initrd + ".tmp", "wb") as fh:
            fh.write(_newc(entries))
        os.replace(kernel + ".tmp", kernel)
        os.replace(initrd + ".tmp", initrd)
    return kernel, initrd
