"""Values kept per key while the object they were computed from is the very same one.

A live view's idle sandboxes come as the last snapshot's very objects (kata_top/stream.py),
so what a view derives from one (a TREND number, a sort key, VM traffic) need not be
derived again. Rounds (one per snapshot) forget the keys a round did not ask for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

Obj = TypeVar("Obj")
V = TypeVar("V")


class SameObjectMemo(Generic[Obj, V]):
    def __init__(self) -> None:
        self._last: dict[str, tuple[Obj, V]] = {}
        self._now: dict[str, tuple[Obj, V]] = {}

    def get(self, key: str, obj: Obj, compute: Callable[[Obj], V]) -> V:
        hit = self._now.get(key) or self._last.get(key)
        if hit is None or hit[0] is not obj:
            hit = (obj, compute(obj))
        self._now[key] = hit
        return hit[1]

    def end_round(self) -> None:
        """What this round did not ask for is forgotten."""
        self._last, self._now = self._now, {}

    def clear(self) -> None:
        self._last, self._now = {}, {}
