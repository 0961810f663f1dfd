"""`kata-top redirect ...` and `kata-top ratelimit ...` (not built yet)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("kata-top: write actions are not available yet", file=sys.stderr)
    return 2
