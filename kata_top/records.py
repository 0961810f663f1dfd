"""`dataclass` and `field` for kata-top's records, without compiling six methods per class.

The standard decorator compiles `__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__`
and `__delattr__` for every class from generated source: for the model's classes alone that
was ~40 ms of every `kata-top snapshot`'s start, the largest single cost of a one-shot
command. Here only `__init__` is compiled (it runs for every object built), and only when the
class's first object is built; the others are shared functions over the instance's
`__dict__`, which holds exactly the fields, in their order (no class here has
`__post_init__`, slots or attributes besides its fields).

The type checker sees the standard decorator (the names are re-exported from `dataclasses`
under TYPE_CHECKING), and `dataclasses.fields`, `replace`, `asdict` and `is_dataclass`
work on these classes: `__dataclass_fields__` is made of real `dataclasses.Field`s the first
time something asks for it, which imports `dataclasses` then, not at every start. The hot
paths read `__record_fields__` instead (kata_top/model.py's `evolve`, the JSON writer).
Supported: `frozen`, `field(default=…)` and `field(default_factory=…)`; anything else is a
TypeError, so a class that needs more uses `dataclasses` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_MISSING: Any = object()  # no default
_FACTORY: Any = object()  # __init__'s default for a field whose default comes from a factory

if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
    from dataclasses import replace as replace
else:
    def dataclass(cls: type | None = None, /, *, frozen: bool = False) -> Any:
        def wrap(c: type) -> type:
            return _record(c, frozen)

        return wrap if cls is None else wrap(cls)

    def field(*, default: Any = _MISSING, default_factory: Any = _MISSING, **rest: Any) -> Any:
        if rest:
            raise TypeError(f"kata_top.records.field supports no {', '.join(rest)}")
        if default is not _MISSING and default_factory is not _MISSING:
            raise TypeError("a default or a default_factory, not both")
        return _Spec(default, default_factory)

    def replace(obj: Any, /, **changes: Any) -> Any:
        """dataclasses.replace: for a record, its field dict copied with the changes (no
        class here derives anything in __init__); anything else, the standard one."""
        names = getattr(type(obj), "__record_names__", None)
        if names is None:
            import dataclasses

            return dataclasses.replace(obj, **changes)
        for name in changes:
            if name not in names:
                raise TypeError(f"{type(obj).__name__} has no field {name!r}")
        new = object.__new__(type(obj))
        state = new.__dict__
        state.update(obj.__dict__)
        state.update(changes)
        return new


class _Spec:
    """What `field()` returns, until the class is processed."""

    __slots__ = ("default", "factory")

    def __init__(self, default: Any, factory: Any) -> None:
        self.default, self.factory = default, factory


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _repr(self: Any) -> str:
    inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
    return f"{type(self).__qualname__}({inner})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        # the fields, in order, and nothing else: what the generated tuple comparison does
        return self.__dict__ == other.__dict__
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(tuple(self.__dict__.values()))


class _DataclassFields:
    """`__dataclass_fields__` built on first use, of real dataclasses.Field objects."""

    def __get__(self, obj: Any, owner: type) -> dict[str, Any]:
        import dataclasses

        real: dict[str, Any] = {}
        annotations = record_annotations(owner)
        specs: dict[str, tuple[Any, Any]] = owner.__record_defaults__  # type: ignore[attr-defined]
        for name in owner.__record_fields__:  # type: ignore[attr-defined]
            default, factory = specs.get(name, (_MISSING, _MISSING))
            f: Any = dataclasses.field(
                default=dataclasses.MISSING if default is _MISSING else default,
                default_factory=dataclasses.MISSING if factory is _MISSING else factory)
            f.name = name
            f.type = annotations[name]
            f._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            f.kw_only = False
            real[name] = f
        # (no __dataclass_params__: fields, replace, asdict and is_dataclass do not read it,
        # and its constructor differs between Python versions)
        owner.__dataclass_fields__ = real  # type: ignore[attr-defined]
        return real


def _record(cls: type, frozen: bool) -> type:
    names: list[str] = []
    defaults: dict[str, tuple[Any, Any]] = {}  # name -> (default, factory)
    for base in reversed(cls.__mro__[1:]):
        for name in getattr(base, "__record_fields__", ()):
            if name not in names:
                names.append(name)
        defaults.update(getattr(base, "__record_defaults__", {}))
    for name, annotation in cls.__annotations__.items():  # its own (Python 3.10+)
        if "ClassVar" in str(annotation) or "InitVar" in str(annotation):
            raise TypeError(f"{cls.__name__}.{name}: use dataclasses for ClassVar/InitVar")
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Spec):
            if value.factory is not _MISSING:
                defaults[name] = (_MISSING, value.factory)
                delattr(cls, name)
            elif value.default is not _MISSING:
                defaults[name] = (value.default, _MISSING)
                setattr(cls, name, value.default)
            else:
                defaults.pop(name, None)
                delattr(cls, name)
        elif value is not _MISSING:
            if isinstance(value, list | dict | set):
                raise ValueError(f"mutable default {type(value)} for field {name} is not "
                                 "allowed: use default_factory")
            defaults[name] = (value, _MISSING)
        else:
            defaults.pop(name, None)
        if name not in names:
            names.append(name)
    # __init__: positional-or-keyword parameters in field order, checked now, compiled when
    # the first object is built (a one-shot command builds a few of the model's classes)
    seen_default = False
    for name in names:
        if name in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {name!r} follows default argument")

    def first_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init = _compile_init(cls, names, defaults)
        cls.__init__ = init  # type: ignore[misc]
        init(self, *args, **kwargs)

    first_init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = first_init  # type: ignore[misc]
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr  # type: ignore[assignment]
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = _eq  # type: ignore[assignment]
    cls.__hash__ = _hash if frozen else None  # type: ignore[assignment]
    if frozen:
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment]
    cls.__match_args__ = tuple(names)  # type: ignore[attr-defined,misc]
    cls.__record_fields__ = tuple(names)  # type: ignore[attr-defined]
    cls.__record_names__ = frozenset(names)  # type: ignore[attr-defined]
    cls.__record_defaults__ = defaults  # type: ignore[attr-defined]
    cls.__dataclass_fields__ = _DataclassFields()  # type: ignore[attr-defined]
    return cls


def _compile_init(cls: type, names: list[str], defaults: dict[str, tuple[Any, Any]]) -> Any:
    """The class's __init__, from source made of its own field names."""
    scope: dict[str, Any] = {"_FACTORY": _FACTORY}
    params: list[str] = []
    body: list[str] = []
    for i, name in enumerate(names):
        default, factory = defaults.get(name, (_MISSING, _MISSING))
        if default is not _MISSING:
            scope[f"_d{i}"] = default
            params.append(f"{name}=_d{i}")
            body.append(f"    _s[{name!r}] = {name}")
        elif factory is not _MISSING:
            scope[f"_f{i}"] = factory
            params.append(f"{name}=_FACTORY")
            body.append(f"    _s[{name!r}] = _f{i}() if {name} is _FACTORY else {name}")
        else:
            params.append(name)
            body.append(f"    _s[{name!r}] = {name}")
    source = "\n".join([f"def __init__(self, {', '.join(params)}):" if params else
                        "def __init__(self):", "    _s = self.__dict__", *body])
    exec(source, scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def record_annotations(cls: type) -> dict[str, Any]:
    """The annotations of a class and its bases, base first (each class's own, as Python
    3.10+ keeps them: not inspect's, whose import a one-shot command does not pay)."""
    out: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if base is not object:
            out.update(base.__annotations__)
    return out


def record_fields(cls: type) -> tuple[str, ...] | None:
    """A record class's field names in order (None: not a record)."""
    return getattr(cls, "__record_fields__", None)
