"""Read what the kernel and bpftrace print: the tracepoint's reason table, and bpftrace's
JSON lines. Both are treated as untrusted input: a line that does not have the expected shape
is skipped (and counted), never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kata_top.boundedjson import loads
from kata_top.drops.model import DropCount

# `__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, …)` in the format's print fmt
_SYMBOLIC = re.compile(r"__print_symbolic\(\s*REC->reason\s*,(.*?)\)\s*$", re.S | re.M)
_ENTRY = re.compile(r"\{\s*(\d+)\s*,\s*\"([A-Za-z0-9_]+)\"\s*\}")
_FIELD = re.compile(r"^\s*field:[^;]*?\b(\w+);", re.M)
# The bpftrace map the generated script fills (collectors/droptrace.py).
DEV_MAP = "@drops"
NODEV_MAP = "@nodev"
# what the script's END prints: the nanoseconds from BEGIN, the window the counts cover
WINDOW_PREFIX = "window_ns="


def reason_names(format_text: str) -> dict[int, str]:
    """The kernel's `skb_drop_reason` names by value, from the kfree_skb tracepoint's format
    file (its print fmt's symbolic table). Empty when the format has none."""
    m = _SYMBOLIC.search(format_text)
    if m is None:
        return {}
    return {int(v): name for v, name in _ENTRY.findall(m.group(1)) if len(v) < 12}


def format_fields(format_text: str) -> set[str]:
    """The field names the tracepoint's format declares."""
    return set(_FIELD.findall(format_text))


def reason_name(code: int, names: dict[int, str]) -> str:
    """A reason's name; a subsystem's reason (high 16 bits set) or one this kernel's table
    lacks keeps its number."""
    name = names.get(code)
    if name is not None:
        return name
    sub = code >> 16
    return f"SUBSYS_{sub}_{code & 0xFFFF}" if sub else f"REASON_{code}"


@dataclass
class Parsed:
    """bpftrace's JSON output, read: the counts, whether the probes attached, and the lines
    that were not understood."""

    counts: list[DropCount]
    attached: bool = False
    skipped: int = 0
    window_ns: int = 0


def _int(s: str) -> int | None:
    s = s.strip()
    if not (s.isascii() and s.isdigit()) or len(s) > 20:
        return None
    return int(s)


def _dev_entry(key: str, value: object, names: dict[int, str]) -> DropCount | None:
    # "inum,reason,function,device": the device goes last, as only it may hold a comma.
    parts = key.split(",", 3)
    if len(parts) != 4 or not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    inum, code = _int(parts[0]), _int(parts[1])
    if inum is None or code is None or not parts[2]:
        return None
    return DropCount(inum, parts[3] or None, reason_name(code, names), code, parts[2], value)


def _nodev_entry(key: str, value: object, names: dict[int, str]) -> DropCount | None:
    parts = key.split(",", 1)
    if len(parts) != 2 or not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    code = _int(parts[0])
    if code is None or not parts[1]:
        return None
    return DropCount(0, None, reason_name(code, names), code, parts[1], value)


def parse_output(lines: list[str] | str, names: dict[int, str]) -> Parsed:
    """bpftrace `-f json` output (one JSON object per line) → drop counts."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    out = Parsed([])
    for line in lines:
        if not line.strip():
            continue
        try:
            doc = loads(line)
        except ValueError:
            out.skipped += 1
            continue
        if not isinstance(doc, dict):
            out.skipped += 1
            continue
        kind, data = doc.get("type"), doc.get("data")
        if kind == "attached_probes":
            out.attached = True
        elif kind == "printf" and isinstance(data, str) and data.startswith(WINDOW_PREFIX):
            out.window_ns = _int(data[len(WINDOW_PREFIX):]) or 0
        elif kind == "map" and isinstance(data, dict):
            for name, entries in data.items():
                reader = {DEV_MAP: _dev_entry, NODEV_MAP: _nodev_entry}.get(name)
                if reader is None or not isinstance(entries, dict):
                    out.skipped += 1
                    continue
                for key, value in entries.items():
                    got = reader(str(key), value, names)
                    if got is None:
                        out.skipped += 1
                    else:
                        out.counts.append(got)
    return out
