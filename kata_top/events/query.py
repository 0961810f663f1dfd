"""Which journal events a reader asked for: `--since` (a duration or an ISO time) and a
sandbox (id prefix or pod name)."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_since(text: str, now: float) -> float:
    """`10m`, `2h`, `90` (seconds) or an ISO time → a Unix time; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if m:
        mult = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - float(m.group(1)) * mult
    try:
        from datetime import datetime

        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--since takes 10m, 2h, 90 or an ISO time, got {text[:40]!r}") \
            from None


def event_matches(doc: dict[str, Any], since: float | None, sandbox: str | None,
                  run_root: str | None = None) -> bool:
    if since is not None and float(doc.get("at") or 0) < since:
        return False
    if run_root is not None and doc.get("run_root") not in (None, run_root):
        return False  # another run root's event (a journal shared by hand)
    if sandbox:
        sid, pod = str(doc.get("sandbox_id") or ""), str(doc.get("pod") or "")
        return sid.startswith(sandbox) or pod == sandbox
    return True
