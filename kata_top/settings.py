"""One typed settings object from the XDG config file, with environment overrides."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from kata_top.fsutil import write_atomically


def config_path() -> str:
    override = os.environ.get("KATA_TOP_CONFIG")
    if override:
        return override
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "kata-top", "config.json")


def audit_log_path() -> str:
    if os.geteuid() == 0:
        return "/var/log/kata-top/audit.jsonl"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "kata-top", "audit.jsonl")


@dataclass
class Settings:
    theme: str = "kata-dark"
    refresh: float = 1.0
    qmp_primary: bool = False
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys

    @classmethod
    def load(cls) -> Settings:
        try:
            with open(config_path()) as fh:
                raw: Any = json.load(fh)
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        s = cls()
        if isinstance(raw.get("theme"), str):
            s.theme = raw["theme"]
        if isinstance(raw.get("refresh"), int | float) and raw["refresh"] > 0:
            s.refresh = float(raw["refresh"])
        if isinstance(raw.get("qmp_primary"), bool):
            s.qmp_primary = raw["qmp_primary"]
        if isinstance(raw.get("keymap"), dict):
            s.keymap = {str(k): str(v) for k, v in raw["keymap"].items()}
        return s

    def save(self) -> None:
        path = config_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(path, json.dumps(asdict(self), indent=2), mode=0o600)
