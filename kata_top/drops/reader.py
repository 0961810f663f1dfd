"""A `kata-top/drops/1` document back into a DropReport (what a remote node's serve sent:
untrusted). Anything off the schema is a ValueError naming the place."""

from __future__ import annotations

from typing import Any

from kata_top.drops.model import HOPS, SCHEMA, DropLine, DropReport, OtherDrops, SandboxDrops

MAX_ITEMS = 100_000


def _get(d: Any, key: str, kind: type | tuple[type, ...], where: str,
         optional: bool = False) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: not an object")
    v = d.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) and kind is not bool:
        raise ValueError(f"{where}.{key}: a boolean")
    if not isinstance(v, kind):
        raise ValueError(f"{where}.{key}: not {getattr(kind, '__name__', kind)}")
    return v


def _items(d: Any, key: str, where: str) -> list[Any]:
    v: list[Any] = _get(d, key, list, where)
    if len(v) > MAX_ITEMS:
        raise ValueError(f"{where}.{key}: too many items")
    return v


def _line(d: Any, where: str) -> DropLine:
    hop = _get(d, "hop", str, where)
    if hop not in HOPS:
        raise ValueError(f"{where}.hop: unknown hop {hop[:20]!r}")
    count = _get(d, "count", int, where)
    if count < 0:
        raise ValueError(f"{where}.count: negative")
    return DropLine(reason=_get(d, "reason", str, where), count=count,
                    device=_get(d, "device", str, where, optional=True),
                    function=_get(d, "function", str, where), hop=hop,
                    meaning=_get(d, "meaning", str, where), fix=_get(d, "fix", str, where),
                    reason_code=_get(d, "reason_code", int, where))


def report_from_dict(doc: Any) -> DropReport:
    if _get(doc, "schema", str, "report") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document")
    sandboxes = []
    for i, s in enumerate(_items(doc, "sandboxes", "report")):
        w = f"sandboxes[{i}]"
        side = _get(s, "side", str, w)
        if side not in ("sandbox", "node"):
            raise ValueError(f"{w}.side: unknown")
        sandboxes.append(SandboxDrops(
            sandbox_id=_get(s, "sandbox_id", str, w), pod=_get(s, "pod", str, w, True),
            side=side, netns_inode=_get(s, "netns_inode", int, w, True),
            drops=tuple(_line(d, f"{w}.drops[{j}]") for j, d in
                        enumerate(_items(s, "drops", w))),
            total=_get(s, "total", int, w)))
    other = tuple(OtherDrops(netns_inode=_get(o, "netns_inode", int, f"other[{i}]"),
                             drops=tuple(_line(d, f"other[{i}].drops[{j}]") for j, d in
                                         enumerate(_items(o, "drops", f"other[{i}]"))),
                             total=_get(o, "total", int, f"other[{i}]"))
                  for i, o in enumerate(_items(doc, "other", "report")))
    num = (int, float)
    return DropReport(node=_get(doc, "node", str, "report"),
                      started_at=float(_get(doc, "started_at", num, "report")),
                      seconds=float(_get(doc, "seconds", num, "report")),
                      traced_seconds=float(_get(doc, "traced_seconds", num, "report")),
                      interrupted=_get(doc, "interrupted", bool, "report"),
                      total=_get(doc, "total", int, "report"), sandboxes=tuple(sandboxes),
                      other=other,
                      sandbox_filter=_get(doc, "sandbox_filter", str, "report", True),
                      notes=tuple(str(n) for n in _items(doc, "notes", "report")))
