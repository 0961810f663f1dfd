"""The Prometheus text format (0.0.4) and OpenMetrics: an Exposition's series written out.

Both formats share the sample lines; they differ in HELP/TYPE names of counters and in
OpenMetrics' `# EOF`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from kata_top.formats.terminal import CONTROL, for_terminal
from kata_top.model import Sandbox

PREFIX = "kata_top_"
SANDBOX_LABELS = ("sandbox_id", "cri_uid", "cri_name", "cri_namespace")
Kind = Literal["gauge", "counter"]
Bodies = dict[str, tuple[Kind, str, bytes]]


def _esc(value: str) -> str:
    """Label-value escaping of both formats (backslash, double quote, newline). Other control
    characters (only a hostile state file has them: Kubernetes names cannot) are shown as
    \\xNN, so a scrape printed to a terminal cannot drive it."""
    if CONTROL.search(value):
        value = for_terminal(value)
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value.__class__ is int:
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class _Family:
    """One family: its extra label names, and rows of (sandbox label text, extra values,
    value). The sandbox label text is escaped once per sandbox, not once per sample."""

    __slots__ = ("doc", "extra", "kind", "name", "rows", "sandbox")

    def __init__(self, name: str, kind: Kind, doc: str, extra: tuple[str, ...],
                 sandbox: bool) -> None:
        self.name, self.kind, self.doc, self.extra, self.sandbox = name, kind, doc, extra, sandbox
        self.rows: list[tuple[str, tuple[str, ...], float]] = []


RestMemo = dict[tuple[tuple[str, ...], tuple[str, ...]], str]


def _lines(fam: _Family, memo: RestMemo) -> str:
    """The sample lines of one family (the same in both formats)."""
    out: list[str] = []
    sample = fam.name + "_total" if fam.kind == "counter" else fam.name
    names = fam.extra
    for who, values, value in fam.rows:
        if names:
            # The same extra labels recur across sandboxes (eth0, tap0_kata, ingress…):
            # escape and join each combination once.
            rest = memo.get((names, values))
            if rest is None:
                rest = memo[(names, values)] = ",".join(
                    f'{k}="{_esc(v)}"' for k, v in zip(names, values, strict=True))
            labels = f"{who},{rest}" if who else rest
        else:
            labels = who
        out.append(f"{sample}{{{labels}}} {_num(value)}\n" if labels
                   else f"{sample} {_num(value)}\n")
    return "".join(out)


def assemble(families: Iterable[tuple[str, Kind, str, bytes]], openmetrics: bool,
              eof: bool = True) -> bytes:
    """HELP and TYPE once per family, then its samples; `# EOF` for OpenMetrics (unless
    `eof` is false: a block of a longer exposition)."""
    out: list[bytes] = []
    for name, kind, doc, body in families:
        doc = doc.replace("\\", "\\\\").replace("\n", "\\n")
        if openmetrics:
            doc = doc.replace('"', '\\"')
        elif kind == "counter":
            # Text 0.0.4 names a counter by its sample name; OpenMetrics by the family's.
            name += "_total"
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode())
        out.append(body)
    if openmetrics and eof:
        out.append(b"# EOF\n")
    return b"".join(out)


class Exposition:
    """The series of one snapshot, built once and written in either format.

    `text()` writes them (a scrape of 200 sandboxes is ~18,000 samples, so the encoder is
    kata-top's own, writing each sandbox's labels once); `families()` hands the same series
    to another encoder, and tests/unit/test_promout.py checks prometheus_client's agrees
    sample for sample."""

    def __init__(self, memo: RestMemo | None = None) -> None:
        self._families: dict[str, _Family] = {}
        self._who_raw: dict[str, tuple[str, ...]] = {}
        self._rest_memo: RestMemo = {} if memo is None else memo

    def who(self, sb: Sandbox) -> str:
        raw = (sb.id, sb.pod.uid or "", sb.pod.name or "", sb.pod.namespace or "")
        text = ",".join(f'{k}="{_esc(v)}"' for k, v in zip(SANDBOX_LABELS, raw, strict=True))
        self._who_raw[text] = raw
        return text

    def add(self, name: str, kind: Kind, doc: str, who: str | None, value: float, /,
            **extra: str) -> None:
        """One sample; `extra` are its labels beyond the sandbox's (positional-only
        parameters above, so a label may be called `kind`)."""
        fam = self._families.get(name)
        if fam is None:
            fam = self._families[name] = _Family(PREFIX + name, kind, doc, tuple(extra),
                                                 who is not None)
        fam.rows.append((who or "", tuple(extra.values()), value))

    def bodies(self) -> dict[str, tuple[Kind, str, bytes]]:
        """Family name → (kind, doc, its sample lines, encoded). Label values come from state
        files: lone surrogates become '?', never a crash."""
        return {f.name: (f.kind, f.doc,
                         _lines(f, self._rest_memo).encode("utf-8", errors="replace"))
                for f in self._families.values()}

    def text(self, openmetrics: bool = False) -> bytes:
        return assemble(((name, kind, doc, body) for name, (kind, doc, body)
                          in self.bodies().items()), openmetrics)

    def families(self) -> list[tuple[str, Kind, str, list[str],
                                      list[tuple[list[str], float]]]]:
        """Each family as (name, kind, doc, label names, samples as (label values, value)),
        unescaped: what another encoder needs to write the same series."""
        out = []
        for fam in self._families.values():
            labelnames = [*SANDBOX_LABELS, *fam.extra] if fam.sandbox else list(fam.extra)
            out.append((fam.name, fam.kind, fam.doc, labelnames,
                        [([*self._who_raw.get(who, ()), *values], value)
                         for who, values, value in fam.rows]))
        return out
