"""Unit tests: no root, no lab, no QEMU. need_root() fails here (see tests/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import UNIT


@pytest.fixture(autouse=True)
def _unit_guard() -> Iterator[None]:
    UNIT["running"] = True
    try:
        yield
    finally:
        UNIT["running"] = False
