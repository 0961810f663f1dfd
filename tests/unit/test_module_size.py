"""Small modules named for what they hold: none over MAX_LINES lines."""

from __future__ import annotations

import os

from tests.helpers import ROOT

MAX_LINES = 450


def test_no_module_is_over_the_limit() -> None:
    long = []
    for top in ("kata_top", "collectors", "widgets", "themes"):
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)
                if not name.endswith(".py") or os.path.islink(dirpath):
                    continue
                with open(path, encoding="utf-8") as fh:
                    n = sum(1 for _ in fh)
                if n > MAX_LINES:
                    long.append(f"{rel}: {n} lines")
    assert long == []
