"""Snapshots back from their JSON form (recordings for `--replay`), driven by the type hints.

The input is untrusted (a file from another machine, cut off, edited): a value of the wrong
shape raises RecordingError with the path of the bad field.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from kata_top import model
from kata_top.formats.jsonout import AGES, json_key
from kata_top.model import SCHEMA, Snapshot

# The snapshot's time while its document is read: tc actions' ages count back from it.
_TAKEN_AT: contextvars.ContextVar[float] = contextvars.ContextVar("taken_at", default=0.0)


class RecordingError(ValueError):
    pass


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(model))


class _Bad(Exception):
    """A value of the wrong shape: the message, and the path to it from the innermost
    converter out (each container adds its step on the way up; built only on error)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.steps: list[str] = []


Convert = Callable[[Any], Any]


@cache
def _converter(tp: Any) -> Convert:
    """The function that builds a value of type tp from its JSON form, or raises _Bad.

    Made once per type from its hints (a recording's every snapshot has the same shape):
    reading the hints again for every value cost ~90 % of loading a recording."""
    if tp is Any:
        return _same
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union(tp)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)

        def literal(value: Any) -> Any:
            if value not in allowed:
                raise _Bad(f"{value!r} not one of {allowed}")
            return value
        return literal
    if origin is tuple:
        (inner_tp, _ellipsis) = typing.get_args(tp)
        return _tuple(_converter(inner_tp))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        return _dict(None if kt is str else _converter(kt), _converter(vt))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _record(tp)
    if tp is float:
        return _float
    if tp in (int, str, bool):
        return _exactly(tp)

    def unsupported(value: Any) -> Any:
        raise _Bad(f"unsupported type {tp}")
    return unsupported


def _same(value: Any) -> Any:
    return value


def _union(tp: Any) -> Convert:
    args = typing.get_args(tp)
    optional = type(None) in args
    choices = [_converter(a) for a in args if a is not type(None)]
    if optional and len(choices) == 1:  # X | None, nearly every union of the model
        only = choices[0]

        def maybe(value: Any) -> Any:
            return None if value is None else only(value)
        return maybe

    def union(value: Any) -> Any:
        if value is None and optional:
            return None
        first: _Bad | None = None
        for choice in choices:
            try:
                return choice(value)
            except _Bad as exc:
                first = first or exc
        raise first or _Bad("bad value")
    return union


def _tuple(inner: Convert) -> Convert:
    def build(value: Any) -> Any:
        if not isinstance(value, list):
            raise _Bad("expected a list")
        try:
            return tuple([inner(v) for v in value])
        except _Bad:
            for i, v in enumerate(value):  # which one: converting has no side effects
                try:
                    inner(v)
                except _Bad as exc:
                    exc.steps.append(f"[{i}]")
                    raise
            raise
    return build


def _dict(key: Convert | None, inner: Convert) -> Convert:
    def build(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Bad("expected an object")
        out = {}
        for k, v in value.items():
            name = str(k)
            if key is not None:
                try:
                    name = key(name)
                except _Bad as exc:
                    exc.steps.append(" key")
                    raise
            try:
                out[name] = inner(v)
            except _Bad as exc:
                exc.steps.append(f".{k}")
                raise
        return out
    return build


def _record(tp: type) -> Convert:
    """A model object from its JSON object. The first object built makes two builders from
    the class's fields (not earlier: a class whose fields name it would otherwise ask for its
    own converter): a fast one for an object that has every key (what kata-top writes),
    compiled with plain values' checks inline, and the checked one it falls back to, which
    applies defaults and says where a value is wrong."""
    built: list[tuple[Convert | None, Convert]] = []

    def build(value: Any) -> Any:
        if not built:
            built.append(_record_builders(tp))
        fast, checked = built[0]
        if fast is not None and type(value) is dict:
            try:
                return fast(value)
            except (_Bad, KeyError):
                pass  # the checked builder says what and where
        return checked(value)
    return build


# Plain values a fast builder checks inline (a call each is most of the time otherwise).
# `v - v == 0` holds for a finite float only (inf - inf and nan - nan are nan).
_INLINE = {str: "type(_v) is str", int: "type(_v) is int", bool: "type(_v) is bool",
           float: "type(_v) is float and _v - _v == 0"}


def _record_builders(tp: type) -> tuple[Convert | None, Convert]:
    """(fast, checked); no fast one for Action, whose ages the checked builder converts."""
    hints = _hints(tp)
    fields = [(f.name, json_key(tp, f.name), _converter(hints[f.name]),
               f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
              for f in dataclasses.fields(tp)]
    ages = [name for name in AGES if tp is model.Action]

    def checked(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Bad("expected an object")
        kwargs: dict[str, Any] = {}
        for name, key, convert, required in fields:
            if key in value:
                try:
                    kwargs[name] = convert(value[key])
                except _Bad as exc:
                    exc.steps.append(f".{key}")
                    raise
            elif required:
                raise _Bad(f"missing {key}")
        for name in ages:
            if kwargs.get(name) is not None:
                kwargs[name] = _TAKEN_AT.get() - kwargs[name]  # an age: a time
        return tp(**kwargs)

    if ages:
        return None, checked
    scope: dict[str, Any] = {"tp": tp}
    args = []
    for i, (name, key, convert, _required) in enumerate(fields):
        scope[f"c{i}"] = convert
        hint = hints[name]
        plain = typing.get_args(hint) if typing.get_origin(hint) in (
            typing.Union, types.UnionType) else (hint,)
        values = [t for t in plain if t is not type(None)]
        if values and all(t in _INLINE for t in values):
            tests = [f"({_INLINE[t]})" for t in values]
            if type(None) in plain:
                tests.insert(0, "_v is None")
            # _v: the field's value, bound by the first test (a float field given an int,
            # as JSON writes 1.0, goes through its converter)
            first = tests[0].replace("_v", f"(_v := value[{key!r}])", 1)
            args.append(f"{name}=(_v if {' or '.join([first, *tests[1:]])} else c{i}(_v))")
        else:
            args.append(f"{name}=c{i}(value[{key!r}])")
    source = "def fast(value):\n    return tp(" + ", ".join(args) + ")\n"
    exec(compile(source, f"<jsonin {tp.__name__}>", "exec"), scope)
    return scope["fast"], checked


def _float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            out = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise _Bad("expected a finite number") from None
        if math.isfinite(out):
            return out
    raise _Bad("expected a finite number")


def _exactly(tp: type) -> Convert:
    def build(value: Any) -> Any:
        if type(value) is tp or (isinstance(value, tp)
                                 and not (tp is int and isinstance(value, bool))):
            return value
        raise _Bad(f"expected {tp.__name__}")
    return build


def _build(tp: Any, value: Any, path: str) -> Any:
    """A value of type tp from its JSON form; RecordingError names the path of a bad field."""
    try:
        return _converter(tp)(value)
    except _Bad as exc:
        raise RecordingError(f"{path}{''.join(reversed(exc.steps))}: {exc.message}") from None


def snapshot_from_dict(doc: Any) -> Snapshot:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RecordingError(f"not a kata-top snapshot (schema {SCHEMA} expected)")
    try:
        taken_at = _float(doc.get("taken_at"))
    except _Bad:
        taken_at = 0.0  # (the field's own check below says what is wrong with it)
    token = _TAKEN_AT.set(taken_at)
    try:
        snap: Snapshot = _build(Snapshot, doc, "snapshot")
    finally:
        _TAKEN_AT.reset(token)
    return snap
