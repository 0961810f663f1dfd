"""Drops started and stopped, per sandbox link, with hysteresis (for the events' diff)."""

from __future__ import annotations


class DropTracker:
    """Drops started/stopped with hysteresis: a link that drops a packet every few seconds
    (traffic toward a dead VM's tap) is one `drops-started`, and `drops-stopped` comes only
    after QUIET_S without a drop — not an event pair every few seconds."""

    QUIET_S = 30.0

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], tuple[bool, float]] = {}  # (dropping, last drop)
        self._dropping: set[tuple[str, str]] = set()
        self._known: set[str] = set()  # sandboxes with links tracked

    def update(self, key: tuple[str, str], t: float, drops_ps: float) -> str | None:
        known = self._state.get(key)
        dropping, last = known if known else (False, t)
        self._known.add(key[0])
        if drops_ps > 0:
            self._state[key] = (True, t)
            self._dropping.add(key)
            return "started" if known is not None and not dropping else None
        if dropping and t - last >= self.QUIET_S:
            self._state[key] = (False, last)
            self._dropping.discard(key)
            return "stopped"
        self._state[key] = (dropping, last)
        return None

    def quiet(self, sid: str) -> bool:
        """Tracked, and none of its links dropping: nothing here can turn without a drop."""
        return sid in self._known and not any(k[0] == sid for k in self._dropping)

    def forget_except(self, live: set[str]) -> None:
        self._state = {k: v for k, v in self._state.items() if k[0] in live}
        self._dropping = {k for k in self._dropping if k[0] in live}
        self._known &= live
