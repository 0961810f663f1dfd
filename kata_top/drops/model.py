"""The records of a drop trace: what the kernel counted, and the report built from it.

Plain frozen dataclasses of plain values (they cross threads and become JSON as they are);
the report's JSON is the `kata-top/drops/1` contract (kata_top/formats/schema/drops-1.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SCHEMA = "kata-top/drops/1"

# The datapath of a tcfilter sandbox, node to guest; `other` is any other device.
Hop = Literal["node-veth", "eth0", "mirred", "tap", "vmm", "other"]
HOPS: tuple[Hop, ...] = ("node-veth", "eth0", "mirred", "tap", "vmm", "other")
HOP_LABEL: dict[Hop, str] = {
    "node-veth": "node veth", "eth0": "eth0 ingress", "mirred": "tc mirred",
    "tap": "tap", "vmm": "VMM", "other": "other device"}
Side = Literal["sandbox", "node"]


@dataclass(frozen=True)
class DropCount:
    """One aggregate of the kernel's `kfree_skb` tracepoint: drops of one reason, at one
    kernel function, on one device of one network namespace (inode 0 and device None: the
    packet had no device)."""

    netns_inode: int
    device: str | None
    reason: str
    reason_code: int
    function: str
    count: int


@dataclass(frozen=True)
class RawTrace:
    """What one run of the tracer returned: the counts and how long it really listened."""

    counts: tuple[DropCount, ...]
    seconds: float  # asked for
    traced_seconds: float  # attached for
    interrupted: bool = False
    started_at: float = 0.0


@dataclass(frozen=True)
class DropLine:
    """Drops of one reason on one device and function, placed on a hop, with what it means
    for Kata and the fix."""

    reason: str
    count: int
    device: str | None
    function: str
    hop: Hop
    meaning: str
    fix: str
    reason_code: int = 0


@dataclass(frozen=True)
class SandboxDrops:
    """A sandbox's drops: in its own network namespace (`sandbox`) or on the node's end of
    its veth pair (`node`)."""

    sandbox_id: str
    pod: str | None
    side: Side
    netns_inode: int | None
    drops: tuple[DropLine, ...]
    total: int = 0


@dataclass(frozen=True)
class OtherDrops:
    """Drops in a namespace that belongs to no sandbox (inode 0: the packet had no device)."""

    netns_inode: int
    drops: tuple[DropLine, ...]
    total: int = 0


@dataclass(frozen=True)
class DropReport:
    """One time-boxed trace of the kernel's drop reasons, per sandbox and hop."""

    node: str
    started_at: float
    seconds: float
    traced_seconds: float
    interrupted: bool
    total: int
    sandboxes: tuple[SandboxDrops, ...] = ()
    other: tuple[OtherDrops, ...] = ()
    sandbox_filter: str | None = None
    schema: str = SCHEMA
    notes: tuple[str, ...] = field(default_factory=tuple)

    def for_sandbox(self, sandbox_id: str) -> tuple[SandboxDrops, ...]:
        return tuple(s for s in self.sandboxes if s.sandbox_id == sandbox_id)
