"""What a view may ask a source to change: typed write requests.

The dashboard's dialogs build these; `Source.plan()` turns one into a Plan against fresh state
(kata_top.actions). Plain data, so widgets can build them without importing the write path.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from kata_top.model import Direction


class ActionError(Exception):
    """A write refused or failed; the message says why (and, on failure, that it was rolled
    back). Read-only sources raise it for every request."""


RedirectOp = Literal["add", "remove"]
RedirectDirection = Literal["in", "out", "both"]


class RedirectRequest(Struct, frozen=True):
    """Add or remove Kata's tc redirect(s) of one sandbox."""

    sandbox_id: str
    op: RedirectOp
    direction: RedirectDirection


class RateLimitRequest(Struct, frozen=True):
    """Set (bits/s) or clear (None) Kata's HTB rate limit per direction of one sandbox."""

    sandbox_id: str
    rates: dict[Direction, int | None]


ActionRequest = RedirectRequest | RateLimitRequest
