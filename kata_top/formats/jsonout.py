"""The Snapshot as the versioned JSON contract (`kata_top/formats/schema/snapshot-1.json`)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from kata_top.model import Action, Filter, Redirect, Sandbox, Snapshot
from kata_top.records import record_annotations, record_fields

# Model attribute → JSON key, where they differ.
RENAMES: dict[type, dict[str, str]] = {
    Redirect: {"from_dev": "from", "to_dev": "to"},
    # times in the model, ages (seconds before the snapshot's time) in JSON: see `age`
    Action: {"installed_at": "installed_s", "last_used_at": "last_used_s"},
}
AGES = RENAMES[Action]


def json_key(cls: type, name: str) -> str:
    return RENAMES.get(cls, {}).get(name, name)


def age(at: float | None, now: float) -> float | None:
    """A time as seconds before `now` (USER_HZ resolution, as the kernel counts them)."""
    return None if at is None else max(0.0, round(now - at, 2))


_PRIMITIVE = (str, int, float, bool, type(None))
_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}  # class -> (attribute, JSON key)


def _names(cls: type) -> tuple[str, ...]:
    """A model class's field names (a plain dataclass's too, importing dataclasses then)."""
    names = record_fields(cls)
    if names is None:
        import dataclasses

        names = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _model_class(t: type) -> bool:
    """A record or dataclass class (kata_top/records.py)."""
    return hasattr(t, "__record_fields__") or hasattr(t, "__dataclass_fields__")


def is_model(obj: Any) -> bool:
    """obj is an instance of a record or dataclass, not a class."""
    return _model_class(type(obj)) and not isinstance(obj, type)


def _fields(cls: type) -> tuple[tuple[str, str], ...]:
    out = _FIELDS.get(cls)
    if out is None:
        out = _FIELDS[cls] = tuple((name, json_key(cls, name)) for name in _names(cls))
    return out


_str = json.encoder.encode_basestring_ascii
_KEYS: dict[str, str] = {}


def _key(k: str) -> str:
    out = _KEYS.get(k)
    if out is None:
        out = _KEYS[k] = _str(k)
    return out


_PREFIXES: dict[type, tuple[tuple[str, str], ...]] = {}  # class -> (attribute, '"key":')


def _prefixes(cls: type) -> tuple[tuple[str, str], ...]:
    out = _PREFIXES.get(cls)
    if out is None:
        out = _PREFIXES[cls] = tuple((n, _str(k) + ":") for n, k in _fields(cls))
    return out


def _float(f: float) -> str:
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "Infinity" if f > 0 else "-Infinity"
    return float.__repr__(f)


def _age_text(at: float | None, now: float) -> str:
    """`age` as JSON text: the tc action times the templates and writers fill in."""
    seconds = age(at, now)
    return "null" if seconds is None else _float(seconds)


_AGED = (Action, Filter)
_HOLDS_AGES = (Action, Filter, Sandbox)
# the fields whose text moves with the snapshot's time, per class that has them
_MOVING: dict[type, frozenset[str]] = {Action: frozenset(AGES), Filter: frozenset({"actions"}),
                                       Sandbox: frozenset({"filters"})}


# One-shot writers (Encoder(remember=False), as `snapshot --json` uses): a model class's
# fields unrolled into one expression, each value of the type its annotation names written
# inline — nested model objects by their own writers, tuples element by element — and tc
# actions' times as ages. Every check is by exact type and anything else goes through
# Encoder.text, so a wrong annotation costs speed, never correctness. Generic per-object
# dispatch was most of a 1,000-sandbox snapshot's encoding time.
Writer = Callable[[Any, Callable[[Any], str], float], str]
_WRITERS: dict[type, Writer] = {}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TUPLE_OF = re.compile(r"^tuple\[(\w+), \.\.\.\]$")


def _writer(cls: type) -> Writer:
    w = _WRITERS.get(cls)
    if w is not None:
        return w
    scope: dict[str, Any] = {"_str": _str, "_float": _float, "_age_text": _age_text,
                             "writer": _writer}
    module = vars(sys.modules[cls.__module__])
    lines = ["def write(o, text, now):"]
    pieces: list[str] = []
    annotations = record_annotations(cls)
    for i, (name, prefix) in enumerate(_prefixes(cls)):
        var = f"v{i}"
        lines.append(f"    {var} = o.{name}")
        ann = annotations.get(name, "Any")
        if cls is Action and name in AGES:
            expr = f"_age_text({var}, now)"
        else:
            expr = _inline(var, ann if isinstance(ann, str) else getattr(ann, "__name__", "Any"),
                           module, scope)
        pieces.append(repr(("," if i else "{") + prefix))
        pieces.append(expr)
    pieces.append("'}'")
    lines.append(f"    return ''.join(({', '.join(pieces)}))")
    exec("\n".join(lines), scope)  # the source is built from the model's own fields
    made: Writer = scope["write"]
    _WRITERS[cls] = made
    return made


def _inline(var: str, annotation: str, module: dict[str, Any], scope: dict[str, Any]) -> str:
    """An expression writing `var`, whose annotation is `annotation`."""
    expr = f"text({var})"
    m = _TUPLE_OF.match(annotation.replace(" | None", ""))
    if m:
        item = _inline("x", m.group(1), module, scope)
        expr = (f"(('[' + ','.join([{item} for x in {var}]) + ']') "
                f"if type({var}) is tuple else {expr})")
    else:
        for name in set(_NAME.findall(annotation)):
            cls = module.get(name)
            if isinstance(cls, type) and _model_class(cls):
                scope[f"C_{name}"] = cls
                # looked up at the call: a class's writer is built when first met
                expr = (f"(writer(C_{name})({var}, text, now) if type({var}) is C_{name} "
                        f"else {expr})")
        if "float" in annotation:
            expr = f"(_float({var}) if type({var}) is float else {expr})"
        if "bool" in annotation:
            expr = f"(('true' if {var} else 'false') if type({var}) is bool else {expr})"
        if re.search(r"\bint\b", annotation):
            expr = f"(int.__repr__({var}) if type({var}) is int else {expr})"
        # str, and the Literal aliases of str (a name this table does not know)
        expr = f"(_str({var}) if type({var}) is str else {expr})"
    if "None" in annotation:
        expr = f"('null' if {var} is None else {expr})"
    return expr


def _document(snap: Snapshot, text: Callable[[Any], str]) -> str:
    """The compact document, each field's value written by `text`; schema first, for
    humans reading the stream."""
    body = ",".join(f"{_key(key)}:{text(getattr(snap, name))}"
                    for name, key in _fields(type(snap)) if key != "schema")
    return f'{{"schema":{_str(snap.schema)},{body}}}'


class Encoder:
    """Model objects as JSON, remembering the last snapshot's text.

    The model is immutable, and an idle sandbox is built from the very objects it was made
    of a cycle before (kata_top/engine/core.py): a stream (snapshot --watch) writes the compact
    text of only what changed, the rest from the last snapshot's.
    """

    def __init__(self, remember: bool = True, now: float | None = None) -> None:
        self._remember = remember
        # the time tc actions' ages count up to: the snapshot's (set by snapshot/dumps)
        self.now = time.time() if now is None else now
        self._prev_text: dict[int, tuple[Any, str]] = {}  # id -> (the object, its JSON)
        self._texts: dict[int, tuple[Any, str]] = {}
        # id -> (the object, its text's fixed pieces, the action times between them)
        self._prev_splits: dict[int, tuple[Any, list[str], list[float | None]]] = {}
        self._splits: dict[int, tuple[Any, list[str], list[float | None]]] = {}

    def plain(self, obj: Any) -> Any:
        """obj as plain JSON values (dicts, lists, primitives)."""
        if isinstance(obj, _PRIMITIVE):
            return obj
        if is_model(obj):
            conv = self.plain
            if type(obj) is Action:
                return {key: age(getattr(obj, name), self.now) if name in AGES else
                        conv(getattr(obj, name)) for name, key in _fields(Action)}
            return {key: conv(getattr(obj, name)) for name, key in _fields(type(obj))}
        if isinstance(obj, tuple | list):
            return [self.plain(x) for x in obj]
        if isinstance(obj, dict):
            return {str(k): self.plain(v) for k, v in obj.items()}
        return obj

    def snapshot(self, snap: Snapshot) -> dict[str, Any]:
        """The snapshot as the JSON contract's document."""
        self.now = snap.taken_at
        d: dict[str, Any] = self.plain(snap)
        # schema first, for humans reading the stream
        return {"schema": d["schema"], **{k: v for k, v in d.items() if k != "schema"}}

    def dumps(self, snap: Snapshot, indent: int | None = None) -> str:
        if indent:
            return json.dumps(self.snapshot(snap), indent=indent)
        self.now = snap.taken_at
        if not self._remember:
            return self._write(snap)
        # Compact: written as text straight from the model, each unchanged object's text
        # remembered (no plain values built, then walked again by json).
        text, splits = self._texts, self._splits
        try:
            return _document(snap, self.text)
        finally:
            self._prev_text, self._texts = text, {}
            self._prev_splits, self._splits = splits, {}

    def _write(self, snap: Snapshot) -> str:
        """The compact text with the one-shot writers: nothing remembered."""
        now = self.now

        def text(obj: Any) -> str:  # what the writers do not write inline
            w = _WRITERS.get(type(obj))
            if w is not None or is_model(obj):
                return (w or _writer(type(obj)))(obj, text, now)
            if type(obj) in (tuple, list):
                return "[" + ",".join([text(x) for x in obj]) + "]"
            return self.text(obj)

        return _document(snap, text)

    def _split_text(self, obj: Any, t: type) -> str:
        """A sandbox, filter or action whose text holds tc actions' ages: its text is kept
        as a template, the fixed pieces between the action times it holds (down through
        its filters and their actions), and only the ages are written anew."""
        key = id(obj)
        hit = self._splits.get(key) or self._prev_splits.get(key)
        if hit is None or hit[0] is not obj:
            statics, times = self._template(obj, t)
            hit = (obj, statics, times)
        self._splits[key] = hit
        _obj, statics, times = hit
        now = self.now
        out = [statics[0]]
        for at, static in zip(times, statics[1:], strict=True):
            out.append(_age_text(at, now))
            out.append(static)
        return "".join(out)

    def _template(self, obj: Any, t: type) -> tuple[list[str], list[float | None]]:
        """(fixed pieces, the times between them): len(pieces) == len(times) + 1."""
        statics: list[str] = ["{"]
        times: list[float | None] = []
        moving = _MOVING[t]
        first = True
        for n, k in _prefixes(t):
            statics[-1] += ("" if first else ",") + k
            first = False
            v = getattr(obj, n)
            if n not in moving:
                statics[-1] += self.text(v)
            elif t is Action:
                times.append(v)
                statics.append("")
            else:  # a filter's actions, a sandbox's filters: their templates, in a list
                statics[-1] += "["
                for i, x in enumerate(v):
                    inner, inner_times = self._template(x, type(x))
                    statics[-1] += ("," if i else "") + inner[0]
                    statics.extend(inner[1:])
                    times.extend(inner_times)
                statics[-1] += "]"
        statics[-1] += "}"
        return statics, times

    def text(self, obj: Any) -> str:
        """obj as compact JSON, exactly as json.dumps(plain(obj), separators=(",", ":"))."""
        t = type(obj)
        if t is str:
            return _str(obj)
        if t is bool:
            return "true" if obj else "false"
        if t is int:
            return int.__repr__(obj)
        if t is float:
            return _float(obj)
        if obj is None:
            return "null"
        # Texts that hold tc actions' ages, which move with the snapshot's time, are not
        # remembered whole: the same object shows older ages at a later snapshot. Their
        # other fields are, as text around the ages (`_split_text`).
        if t in _AGED or (t is Sandbox and obj.filters):
            return self._split_text(obj, t)
        if t is tuple and obj and type(obj[0]) in _HOLDS_AGES:
            return "[" + ",".join([self.text(x) for x in obj]) + "]"
        key = id(obj)
        hit = self._texts.get(key) or self._prev_text.get(key)
        if hit is not None and hit[0] is obj:
            self._texts[key] = hit
            return hit[1]
        if t is tuple or t is list:
            out = "[" + ",".join([self.text(x) for x in obj]) + "]"
        elif t is dict:
            if all(type(v) in _PRIMITIVE for v in obj.values()):
                out = json.dumps(obj, separators=(",", ":"))  # the C encoder, keys and all
            else:
                out = json.dumps(self.plain(obj), separators=(",", ":"))
        elif is_model(obj):
            parts = []
            text, now, prev = self.text, self._texts, self._prev_text
            for n, k in _prefixes(t):  # inline: primitives and remembered objects
                v = getattr(obj, n)
                tv = type(v)
                if tv is str:
                    parts.append(k + _str(v))
                elif v is None:
                    parts.append(k + "null")
                elif tv is int:
                    parts.append(k + int.__repr__(v))
                else:
                    hit = now.get(id(v)) or prev.get(id(v))
                    if hit is not None and hit[0] is v:
                        now[id(v)] = hit
                        parts.append(k + hit[1])
                    else:
                        parts.append(k + text(v))
            out = "{" + ",".join(parts) + "}"
        else:
            return json.dumps(self.plain(obj), separators=(",", ":"))
        self._texts[key] = (obj, out)  # holding obj keeps its id from being reused
        return out


def to_plain(obj: Any) -> Any:
    return Encoder(remember=False).plain(obj)


def sandbox_to_dict(sb: Sandbox, now: float | None = None) -> dict[str, Any]:
    """One sandbox as its JSON object; tc actions' ages at `now` (the snapshot's time)."""
    d: dict[str, Any] = Encoder(remember=False, now=now).plain(sb)
    return d


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    return Encoder(remember=False).snapshot(snap)


def dumps(snap: Snapshot, indent: int | None = None) -> str:
    return Encoder(remember=False).dumps(snap, indent)
