"""Styles for Rich renderables, taken from the active theme's variables.

Widgets that draw Rich Text (the datapath diagram, detail panels, findings tables) use these
instead of colour names, so every theme — the terminal's own 16 colours included — colours
them like the TCSS does. `dim` and `bold` are attributes, not colours, and stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from rich.style import Style
from textual.app import App
from textual.color import Color, ColorParseError

from kata_top.model import Severity

MUTED = Style(dim=True)
STRONG = Style(bold=True)


def _colour(variables: Mapping[str, str], name: str, fallback: str) -> Style:
    try:
        return Style(color=Color.parse(variables.get(name, fallback)).rich_color)
    except ColorParseError:
        return Style(color=Color.parse(fallback).rich_color)


@dataclass(frozen=True)
class Palette:
    ok: Style
    bad: Style
    warn: Style
    value: Style  # numbers and addresses worth the eye (MTU, MAC, commands)
    accent: Style

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> Palette:
        return cls(ok=_colour(variables, "success", "green"),
                   bad=_colour(variables, "error", "red"),
                   warn=_colour(variables, "warning", "yellow"),
                   value=_colour(variables, "secondary", "cyan"),
                   accent=_colour(variables, "accent", "magenta"))

    def badge(self, style: Style) -> Style:
        """A header badge: the colour as background, bold dark text."""
        return Style(bold=True, color="black", bgcolor=style.color)

    @property
    def bad_strong(self) -> Style:
        return self.bad + STRONG

    def severity(self, severity: Severity) -> Style:
        return {"critical": self.bad_strong, "warning": self.warn, "info": MUTED}[severity]


_BY_APP: WeakKeyDictionary[App[Any], tuple[str, Palette]] = WeakKeyDictionary()


def palette_of(app: App[Any]) -> Palette:
    """The palette of the app's current theme, kept per theme: Textual generates every CSS
    variable of the theme to answer, and the header asks twice a second."""
    theme = str(getattr(app, "theme", ""))
    hit = _BY_APP.get(app)
    if hit is not None and hit[0] == theme:
        return hit[1]
    palette = Palette.from_variables(app.get_css_variables())
    _BY_APP[app] = (theme, palette)
    return palette


DEFAULT = Palette.from_variables({})
