"""What the engine asks a VMM's monitor or API about: one sandbox's VMM process.

Its own module so the engine can build targets without importing the monitor clients
(asyncio, QMP) on paths that never ask a monitor.
"""

from __future__ import annotations

from msgspec import Struct


class VmmTarget(Struct, frozen=True):
    sandbox_id: str
    kind: str  # qemu | clh | firecracker | dragonball | unknown
    pid: int | None
    argv: tuple[str, ...]
    vm_dir: str
    api_socket: str | None = None
