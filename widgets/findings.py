"""The one findings table: host findings (the `h` screen) and a sandbox's problems tab."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from kata_top.model import Finding, SandboxError
from kata_top.widgets.palette import Palette


def findings_table(findings: Sequence[Finding], palette: Palette, empty: str,
                   errors: Sequence[SandboxError] = ()) -> Table:
    """Errors first (parts that could not be read), then findings as they came (worst first);
    `empty` is what an empty table says."""
    t = Table("sev", "code", "finding / fix", box=None, expand=True, header_style="bold",
              padding=(0, 1))
    for e in errors:
        t.add_row(Text("error ", style=palette.bad_strong), e.where, e.message)
    for f in findings:
        t.add_row(Text(f.severity + " ", style=palette.severity(f.severity)), f.code,
                  Text(f"{f.summary}\nfix: {f.fix}"))
    if not findings and not errors:
        t.add_row("", "", empty)
    return t
