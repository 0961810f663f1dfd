"""Modal screens: help (generated from the bindings), host findings, confirmation, actions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from kata_top.model import Direction, Finding
from kata_top.requests import ActionRequest, RateLimitRequest, RedirectRequest
from kata_top.widgets.findings import findings_table
from kata_top.widgets.palette import palette_of

if TYPE_CHECKING:
    from kata_top.widgets.app import KataTopApp

WRITE_ACTIONS = {"redirect", "ratelimit"}
KEY_NAMES = {"question_mark": "?", "slash": "/", "plus": "+", "minus": "-", "space": "space",
             "left_square_bracket": "[", "right_square_bracket": "]", "escape": "Esc",
             "enter": "Enter", "comma": ",", "full_stop": "."}


def key_label(keys: str) -> str:
    return " ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))


def help_table(screen: Screen[object], write: bool) -> Table:
    """Every key of every screen and of the app, as bound right now (keymap applied)."""
    from kata_top.widgets.screens import DetailScreen, OverviewScreen
    from kata_top.widgets.table_screen import TableScreen

    t = Table("key", "does", "id", box=None, expand=True, header_style="bold")
    keymap: dict[str, str] = getattr(screen.app, "_keymap", {}) or {}
    own = getattr(screen.app, "HELP_SECTIONS", None)  # the fleet console lists its own
    sections = own or (("everywhere", screen.app.BINDINGS),
                ("overview", [*TableScreen.BINDINGS, *OverviewScreen.BINDINGS]),
                ("sandbox detail", DetailScreen.BINDINGS))
    for title, bindings in sections:
        t.add_row(Text(title, style="bold underline"), "", "")
        for binding in bindings:
            if not isinstance(binding, Binding):
                continue
            keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
            greyed = binding.action in WRITE_ACTIONS and not write
            style = "dim strike" if greyed else ""
            note = "read-only: start with --write" if greyed else (binding.id or "")
            t.add_row(Text(key_label(keys), style=style or "bold"),
                      Text(binding.description or binding.action, style=style),
                      Text(note, style="dim"))
        if title == "sandbox detail":
            # Textual's own tab bar keys: no binding of ours to list them
            t.add_row(Text("Tab, then ← →", style="bold"), "detail tabs: Tab moves to the tab "
                      "bar (Problems, Links, tc, VMM, virtiofsd, …), ← → switch", "")
    t.add_row(Text("ctrl+p", style="bold"), "command palette: jump to a sandbox, actions", "")
    return t


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="close-help")]

    def __init__(self, below: Screen[object], write: bool) -> None:
        super().__init__()
        self._below = below
        self._write = write

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(Text("kata-top keys", style="bold"))
            yield Static(help_table(self._below, self._write))
            yield Static(Text("Keys can be remapped by binding id in the config file "
                              "(\"keymap\": {\"pause\": \"z\"}).", style="dim"))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)


class HostScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,h,q", "dismiss", "Close", id="close-host")]

    def __init__(self, findings: tuple[Finding, ...]) -> None:
        super().__init__()
        self._findings = findings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="host-box"):
            yield Static(Text("Host findings (devices, kernel probe, Kata configuration)",
                              style="bold"))
            yield Static(findings_table(self._findings, palette_of(self.app),
                                        "the host looks ready for Kata"))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Shows the exact commands of a plan; nothing happens unless Apply is chosen."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel"),
                Binding("y", "apply", "Apply", id="apply")]

    def __init__(self, title: str, commands: list[str]) -> None:
        super().__init__()
        self._title = title
        self._commands = commands

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="confirm-box"):
            yield Static(Text(self._title, style="bold"))
            yield Static(Text("The equivalent commands; they are applied together or not at "
                              "all:", style="dim"))
            yield Static(Text("\n".join(self._commands), style=palette_of(self.app).value))
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel (Esc)", id="no")
                yield Button("Apply (y)", id="yes", variant="warning")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_apply(self) -> None:
        self.dismiss(True)


class ActionScreen(ModalScreen[ActionRequest | None]):
    """Asks what to do: redirect add/remove + direction, or rate limit in/out values.

    Returns a typed request (or None); rates are validated as they are typed.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel-action")]

    def __init__(self, kind: str, target: str, sandbox_id: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.target = target
        self.sandbox_id = sandbox_id

    @property
    def kapp(self) -> KataTopApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="action-box"):
            if self.kind == "redirect":
                yield Static(Text(f"Redirect on {self.target}", style="bold"))
                with RadioSet(id="op"):
                    yield RadioButton("add (restore)", value=True, id="add")
                    yield RadioButton("remove (cut off)", id="remove")
                with RadioSet(id="direction"):
                    yield RadioButton("both", value=True, id="both")
                    yield RadioButton("in (eth0 → tap)", id="in")
                    yield RadioButton("out (tap → eth0)", id="out")
            else:
                yield Static(Text(f"Rate limit on {self.target}", style="bold"))
                yield Label("into the VM (e.g. 50mbit; empty = leave; 'clear' removes)")
                yield Input(id="in-rate", placeholder="in rate")
                yield Label("out of the VM")
                yield Input(id="out-rate", placeholder="out rate")
            yield Static(id="action-error", classes="error-text")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel (Esc)", id="no")
                yield Button("Show plan", id="yes", variant="primary")

    def _validate(self) -> ActionRequest | str:
        """The request the dialog describes, or what is wrong with it."""
        from kata_top.units import parse_rate

        if self.kind == "redirect":
            op = self.query_one("#op", RadioSet).pressed_button
            d = self.query_one("#direction", RadioSet).pressed_button
            return RedirectRequest(self.sandbox_id,
                                   "remove" if op is not None and op.id == "remove" else "add",
                                   "in" if d is not None and d.id == "in" else
                                   "out" if d is not None and d.id == "out" else "both")
        rates: dict[Direction, int | None] = {}
        directions: tuple[Direction, ...] = ("in", "out")
        for direction in directions:
            raw = self.query_one(f"#{direction}-rate", Input).value.strip()
            if not raw:
                continue
            if raw == "clear":
                rates[direction] = None
                continue
            try:
                rates[direction] = parse_rate(raw)
            except ValueError as exc:
                return str(exc)
        if not rates:
            return "give an in or out rate (or 'clear')"
        return RateLimitRequest(self.sandbox_id, rates)

    def on_input_changed(self, event: Input.Changed) -> None:
        res = self._validate()
        self.query_one("#action-error", Static).update(res if isinstance(res, str) else "")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "yes":
            self.dismiss(None)
            return
        res = self._validate()
        if isinstance(res, str):
            self.query_one("#action-error", Static).update(res)
            return
        self.dismiss(res)

    def action_cancel(self) -> None:
        self.dismiss(None)
