"""kata-top's themes and stylesheet location."""

from __future__ import annotations

import os
from typing import Any

from textual.app import App
from textual.theme import Theme

TCSS_PATH = os.path.join(os.path.dirname(__file__), "kata_top.tcss")

KATA_DARK = Theme(
    name="kata-dark", primary="#4FA3E0", secondary="#7AA2F7", accent="#E0AF68",
    warning="#E0AF68", error="#F7768E", success="#9ECE6A", foreground="#C0CAF5",
    background="#16161E", surface="#1F2335", panel="#24283B", dark=True,
)
KATA_LIGHT = Theme(
    name="kata-light", primary="#1F6FB2", secondary="#5A4FCF", accent="#B35900",
    warning="#B35900", error="#C0182F", success="#2E7D32", foreground="#1A1B26",
    background="#F5F5F7", surface="#FFFFFF", panel="#E4E6EE", dark=False,
)
KATA_HIGH_CONTRAST = Theme(
    name="kata-high-contrast", primary="#FFFF00", secondary="#00FFFF", accent="#FF00FF",
    warning="#FFFF00", error="#FF3030", success="#00FF00", foreground="#FFFFFF",
    background="#000000", surface="#000000", panel="#101010", dark=True,
)

THEMES = (KATA_DARK, KATA_LIGHT, KATA_HIGH_CONTRAST)
# Short names for --theme; `terminal` follows the terminal's own 16 colours (good over SSH).
ALIASES = {"dark": "kata-dark", "light": "kata-light", "high-contrast": "kata-high-contrast",
           "terminal": "ansi-dark", "terminal-light": "ansi-light"}
CYCLE = ("kata-dark", "kata-light", "kata-high-contrast", "ansi-dark")


def resolve(name: str) -> str:
    """The registered theme name for a user's choice; ValueError lists the choices."""
    full = ALIASES.get(name, name)
    if full in {t.name for t in THEMES} | {"ansi-dark", "ansi-light"}:
        return full
    raise ValueError(f"unknown theme {name!r}; choose one of "
                     f"{', '.join(sorted(ALIASES))} (or {', '.join(CYCLE)})")


def install(app: App[Any], theme: str, keymap: dict[str, str]) -> None:
    """Register kata-top's themes on an app, select one and apply the user's keymap (what
    the dashboard and the fleet console both do on mount)."""
    for t in THEMES:
        app.register_theme(t)
    app.theme = theme
    if keymap:
        app.set_keymap(keymap)
