"""Prometheus text for a long-running exporter: what did not change since the last scrape
is not written again."""

from __future__ import annotations

from kata_top.formats.prom_text import Bodies, Exposition, Kind, RestMemo, assemble
from kata_top.formats.prometheus import host_series, node_series, sandbox_series
from kata_top.model import Sandbox, Snapshot


def _sandbox_key(sb: Sandbox) -> tuple[object, ...]:
    """Everything `_sandbox` reads. Rates are not in it: Prometheus computes its own."""
    # Filters only as far as they are exported: their actions' ages change every cycle.
    actions = tuple((f.dev, f.parent, f.prio, a.kind, a.action, a.target, a.stats)
                    for f in sb.filters for a in f.actions)
    return (sb.pod, sb.runtime, sb.state, sb.network_model, sb.hypervisor, len(sb.errors),
            sb.findings, sb.links, sb.redirects, sb.rate_limits,
            tuple(sorted(sb.configured_rate_limits.items())), sb.qdiscs, sb.classes,
            actions, sb.vmm, sb.virtiofsd)


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    # Identity first: idle namespaces hand back the very same tuples cycle after cycle.
    return all(x is y or x == y for x, y in zip(a, b, strict=True))


MEMO_MAX = 50_000  # escaped label combinations a TextCache keeps


def _touched(last: list[Bodies], now: list[Bodies]) -> set[str] | None:
    """The families whose lines changed between two renders; None when every family must be
    made again (sandboxes came, went or moved; a sandbox's families came or went)."""
    if len(last) != len(now):
        return None
    touched: set[str] = set()
    for old, new in zip(last, now, strict=True):
        if old is not new:
            if old.keys() != new.keys():
                return None
            touched.update(new)
    return touched


class TextCache:
    """Renders snapshots for a long-running exporter: each sandbox's sample lines are kept
    and reused while the data they come from is unchanged (most sandboxes, most scrapes), and
    so is each family's whole block while none of its sandboxes' lines changed, so a scrape
    costs the sandboxes that changed, not all of them. `parts()` hands the blocks out as the
    very same bytes objects while they are unchanged, which lets the exporter's gzip
    (kata_top/serve/gzip_parts.py) compress only what changed. Output equals
    `exposition(snap).text()` (tests/unit/test_promout.py)."""

    def __init__(self) -> None:
        # sandbox id → (what its lines come from, its lines per family, the sandbox)
        self._entries: dict[str, tuple[tuple[object, ...], Bodies, Sandbox]] = {}
        self._memo: RestMemo = {}
        # per format (OpenMetrics or not): family name → the family's block
        self._blocks: dict[bool, dict[str, bytes]] = {}
        self._last_bodies: list[dict[str, tuple[Kind, str, bytes]]] = []
        self._order: dict[str, tuple[Kind, str]] = {}  # families in order of appearance
        self.hits = 0

    def render(self, snap: Snapshot, openmetrics: bool = False,
               tail: Exposition | None = None) -> bytes:
        return b"".join(self.parts(snap, openmetrics, tail))

    def parts(self, snap: Snapshot, openmetrics: bool = False,
              tail: Exposition | None = None) -> list[bytes]:
        """The exposition as blocks (one per family, `# EOF` last for OpenMetrics)."""
        if len(self._memo) > MEMO_MAX:
            # Label combinations come and go with the pods (a virtiofsd's pid, …): an
            # exporter that runs for months starts the memo afresh now and then.
            self._memo.clear()
        head = Exposition()
        node_series(head, snap)
        per_sandbox: list[dict[str, tuple[Kind, str, bytes]]] = []
        entries: dict[str, tuple[tuple[object, ...], Bodies, Sandbox]] = {}
        for sb in snap.sandboxes:
            cached = self._entries.get(sb.id)
            if cached is not None and cached[2] is sb:  # an idle sandbox: the same object
                entries[sb.id] = cached
                per_sandbox.append(cached[1])
                self.hits += 1
                continue
            key = _sandbox_key(sb)
            if cached is not None and _same(cached[0], key):
                bodies = cached[1]
                self.hits += 1
            else:
                ex = Exposition(self._memo)
                sandbox_series(ex, sb)
                bodies = ex.bodies()
            entries[sb.id] = (key, bodies, sb)
            per_sandbox.append(bodies)
        self._entries = entries  # sandboxes that are gone are forgotten
        # Which families can any sandbox's change have touched? With the same sandboxes in
        # the same order, only those of the sandboxes whose lines are new objects; the other
        # families' blocks stand as they are (most of them, most scrapes).
        touched = _touched(self._last_bodies, per_sandbox)
        self._last_bodies = per_sandbox
        order = self._order
        if touched is None or not touched <= order.keys():
            order = {}
            for bodies in per_sandbox:
                for name, (kind, doc, _body) in bodies.items():
                    order.setdefault(name, (kind, doc))
            self._order = order
            touched = None
        out = [assemble([(n, k, d, b)], openmetrics, eof=False)
               for n, (k, d, b) in head.bodies().items()]
        blocks = self._blocks.setdefault(openmetrics, {})
        for name, (kind, doc) in order.items():
            block = blocks.get(name)
            if block is None or touched is None or name in touched:
                lines = [b[name][2] for b in per_sandbox if name in b]
                if not lines:  # a family no sandbox has any more
                    blocks.pop(name, None)
                    continue
                block = blocks[name] = assemble([(name, kind, doc, b"".join(lines))],
                                                 openmetrics, eof=False)
            out.append(block)  # the very same object while unchanged: its gzip is reused
        if self._blocks.get(not openmetrics) and touched != set():
            self._blocks[not openmetrics] = {}  # the other format's blocks are stale now
        end = Exposition()
        host_series(end, snap)
        for more in (end, tail):
            if more is not None:
                out += [assemble([(n, k, d, b)], openmetrics, eof=False)
                        for n, (k, d, b) in more.bodies().items()]
        if openmetrics:
            out.append(b"# EOF\n")
        return out
