"""One typed settings object from the XDG config file, with environment overrides."""

from __future__ import annotations

import os
from typing import Any

import msgspec
from msgspec import Struct, field

from kata_top.boundedjson import loads
from kata_top.fsutil import write_atomically
from kata_top.logs import get_logger


def config_path() -> str:
    override = os.environ.get("KATA_TOP_CONFIG")
    if override:
        return override
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "kata-top", "config.json")


def audit_log_path() -> str:
    """KATA_TOP_AUDIT_LOG, or the standard place (the sandbox locks live beside it)."""
    override = os.environ.get("KATA_TOP_AUDIT_LOG")
    if override:
        return override
    if os.geteuid() == 0:
        return "/var/log/kata-top/audit.jsonl"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "kata-top", "audit.jsonl")


REFRESH_MIN, REFRESH_MAX = 0.1, 3600.0
log = get_logger(__name__)


class Settings(Struct):
    theme: str = "kata-dark"
    refresh: float = 1.0
    qmp_primary: bool = False
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys
    prometheus_url: str | None = None  # `kata-top fleet` without --prometheus
    prometheus_token_file: str | None = None
    prometheus_ca_file: str | None = None

    @classmethod
    def load(cls) -> Settings:
        from kata_top.collectors.safeopen import read_file

        try:
            # Not followed if a symlink, never blocks on a FIFO, at most 1 MiB.
            raw: Any = loads(read_file(config_path(), 1 << 20))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("config %s ignored: %s", config_path(), exc)
            return cls()
        if not isinstance(raw, dict):
            return cls()
        s = cls()
        if isinstance(raw.get("theme"), str):
            s.theme = raw["theme"]
        refresh = raw.get("refresh")
        if isinstance(refresh, int | float) and not isinstance(refresh, bool) and \
                REFRESH_MIN <= refresh <= REFRESH_MAX:
            s.refresh = float(refresh)
        if isinstance(raw.get("qmp_primary"), bool):
            s.qmp_primary = raw["qmp_primary"]
        for key in ("prometheus_url", "prometheus_token_file", "prometheus_ca_file"):
            if isinstance(raw.get(key), str) and raw[key]:
                setattr(s, key, raw[key][:4096])
        if isinstance(raw.get("keymap"), dict):
            s.keymap = {str(k)[:64]: str(v)[:64] for k, v in list(raw["keymap"].items())[:200]
                        if isinstance(v, str)}
        return s

    def save(self) -> None:
        path = config_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(path, msgspec.json.format(msgspec.json.encode(self), indent=2).decode(),
                         mode=0o600)
