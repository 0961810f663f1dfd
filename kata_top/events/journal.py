"""The events' journal: NDJSON lines (kata-top/event/1) appended by `serve` and
`events --follow`, read back by `events` and serve's /api/v1/events."""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Sequence
from typing import Any

from kata_top.model import Event

EVENT_SCHEMA = "kata-top/event/1"
JOURNAL_MAX_BYTES = 8 << 20


def default_journal(run_root: str = "/run") -> str:
    """Where `kata-top serve` and `kata-top events --follow` keep a run root's events: the
    node's (/run) in events.ndjson, any other root's in a journal of its own."""
    if os.geteuid() == 0:
        base = "/var/lib/kata-top"
    else:
        base = os.path.join(os.environ.get("XDG_STATE_HOME")
                            or os.path.expanduser("~/.local/state"), "kata-top")
    root = os.path.normpath(run_root)
    if root in ("/run", "/var/run"):
        return os.path.join(base, "events.ndjson")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.strip("/"))[:60]
    tag = zlib.crc32(root.encode("utf-8", "surrogateescape")) & 0xFFFFFFFF
    return os.path.join(base, f"events-{slug}-{tag:08x}.ndjson")


def event_line(e: Event) -> str:
    from kata_top.formats.jsonout import to_plain

    return json.dumps({"schema": EVENT_SCHEMA, **to_plain(e)}, default=str)


def append_journal(path: str, events: Sequence[Event]) -> None:
    """Append events as NDJSON (kata-top/event/1), rotating to PATH.1 past 8 MiB. Best effort:
    a journal that cannot be written never stops a collection."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            if os.lstat(path).st_size > JOURNAL_MAX_BYTES:
                os.replace(path, path + ".1")
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW |
                     os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, "".join(event_line(e) + "\n" for e in events).encode(
                "utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


class JournalError(Exception):
    """The journal is not something kata-top reads (a FIFO, a link, a device, not a journal)."""


def read_journal(path: str) -> list[dict[str, Any]]:
    """The journal's events, oldest first (its rotated half first); damaged lines skipped.
    JournalError when a file there is not a regular file, or has no JSON object at all."""
    from kata_top.boundedjson import loads
    from kata_top.collectors.safeopen import UnsafeFile, read_file

    out: list[dict[str, Any]] = []
    for p in (path + ".1", path):
        try:
            data = read_file(p, JOURNAL_MAX_BYTES * 2)
        except UnsafeFile as exc:
            raise JournalError(f"refusing to read {p}: {exc.strerror}") from exc
        except OSError:
            continue
        objects = 0
        for line in data.split(b"\n"):
            try:
                doc = loads(line)
            except ValueError:
                continue
            objects += isinstance(doc, dict)
            if _readable_event(doc):
                out.append(doc)
        if not objects and data.strip():  # binary, or text of another kind: say so
            raise JournalError(f"{p} is not a kata-top journal: no line of it is a JSON "
                               f"object ({EVENT_SCHEMA} NDJSON)")
    return out


# An event's time must be one a clock can show: the journal is a file on disk, damaged by a
# full disk or a hand, and a time of "yesterday", 1e400 or year 10^9 cannot be compared,
# formatted or printed.
LATEST_EVENT_TIME = float(2 ** 33)  # the year 2242
_TEXT_FIELDS = ("kind", "severity", "summary", "sandbox_id", "pod", "source", "by")


def _readable_event(doc: Any) -> bool:
    """A journal line that is an event kata-top can filter and print: its schema, a finite
    time within what a clock shows, and text (or nothing) where an event has text."""
    if not isinstance(doc, dict) or doc.get("schema") != EVENT_SCHEMA:
        return False
    at = doc.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float) \
            or not 0 <= at <= LATEST_EVENT_TIME:  # (nan compares false: refused too)
        return False
    return all(doc.get(k) is None or isinstance(doc[k], str) for k in _TEXT_FIELDS)
