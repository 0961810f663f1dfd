"""Rates as operators write them (`50mbit`, `10Mbit`, `1gbit`, `500kbit`, bits/s) and back."""

from __future__ import annotations

import functools
import math
import re

_MULT = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
MAX_RATE_BPS = 10**12 * 8  # tc's 64-bit rate is bytes/s; anything above 8 Tbit is a typo


@functools.cache
def _rate_pattern() -> re.Pattern[str]:
    """Compiled when a rate is first parsed (the read path shows rates, never parses one)."""
    return re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)?\s*$", re.IGNORECASE)


def parse_rate(text: str) -> int:
    """bits/s from `50mbit`, `10Mbit`, `1gbit`, `500kbit`, `1000000` or `1000000bit`.

    Raises ValueError with a sentence that says what is accepted.
    """
    m = _rate_pattern().match(text) if len(text) <= 40 else None
    if not m:
        raise ValueError(f"{text[:40]!r} is not a rate; write e.g. 50mbit, 500kbit, 1gbit or "
                         "bits/s")
    if m.group(3) and m.group(3).lower() == "bps":
        raise ValueError(f"{text!r} is ambiguous (tc reads bps as bytes/s); write mbit/kbit/gbit")
    value = float(m.group(1)) * _MULT[m.group(2).lower()]
    if not math.isfinite(value) or value > MAX_RATE_BPS:
        raise ValueError(f"{text[:40]!r}: above {MAX_RATE_BPS // 10**12} Tbit/s, surely a typo")
    bps = int(value)
    if bps <= 0:
        raise ValueError(f"{text!r}: a rate must be above zero (to cut traffic, remove the "
                         "redirect instead)")
    if bps < 8:
        raise ValueError(f"{text!r}: below 8 bit/s, tc cannot express it")
    if bps > MAX_RATE_BPS:
        raise ValueError(f"{text!r}: above {MAX_RATE_BPS // 10**12} Tbit/s, surely a typo")
    return bps


def fmt_rate(bps: float | None) -> str:
    if bps is None:
        return "-"
    for unit, div in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bps >= div:
            v = bps / div
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{bps:.0f}bit"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}B"


def tc_rate(bps: int) -> str:
    """The shortest exact tc spelling of a rate."""
    for unit, div in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps % div == 0:
            return f"{bps // div}{unit}"
    return f"{bps}bit"
