"""kata_top.records: the model's classes without per-method compilation behave as the
standard library's dataclasses do, for everything kata-top and its tests use."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kata_top import records
from kata_top.model import Link, LinkStats, Sandbox, evolve


@records.dataclass(frozen=True)
class R:
    a: int
    b: str | None = None
    c: dict[str, int] = records.field(default_factory=dict)
    d: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class D:
    a: int
    b: str | None = None
    c: dict[str, int] = dataclasses.field(default_factory=dict)
    d: tuple[int, ...] = ()


@records.dataclass
class Mutable:
    n: int = 0
    items: list[int] = records.field(default_factory=list)


_values = st.integers(), st.none() | st.text(max_size=4), st.tuples(st.integers())


@given(*_values, st.integers(), st.none() | st.text(max_size=4), st.tuples(st.integers()))
def test_a_record_behaves_as_its_dataclass_twin(a: int, b: str | None, d: tuple[int, ...],
                                                a2: int, b2: str | None,
                                                d2: tuple[int, ...]) -> None:
    r, dc = R(a, b, d=d), D(a, b, d=d)
    r2, dc2 = R(a2, b=b2, d=d2), D(a2, b=b2, d=d2)
    assert repr(r)[1:] == repr(dc)[1:]  # the same but for the class name
    assert (r == r2) == (dc == dc2) and (r != r2) == (dc != dc2)
    assert r == R(a, b, d=d)
    for x, y in ((r, dc), (R(a, b, None, d), D(a, b, None, d))):  # type: ignore[arg-type]
        try:
            expected: Any = hash(y)
        except TypeError as exc:
            expected = type(exc)
        try:
            got: Any = hash(x)
        except TypeError as exc:
            got = type(exc)
        assert got == expected  # the fields' tuple's hash, or unhashable as a dataclass
    assert R(a) == R(a, None, {}, ()) and R(a).c is not R(a).c  # a factory per object
    assert [f.name for f in dataclasses.fields(r)] == [f.name for f in dataclasses.fields(dc)]
    assert dataclasses.asdict(r) == dataclasses.asdict(dc)
    assert dataclasses.replace(r, b="x") == R(a, "x", d=d) == records.replace(r, b="x")
    assert dataclasses.is_dataclass(r) and dataclasses.is_dataclass(R)
    assert pickle.loads(pickle.dumps(r)) == r and copy.deepcopy(r) == r
    assert R.__match_args__ == D.__match_args__  # type: ignore[attr-defined]
    assert r != dc  # another class: never equal, as between two dataclasses


def test_frozen_records_refuse_changes_and_mutable_ones_do_not() -> None:
    r = R(1)
    with pytest.raises(AttributeError):
        r.a = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del r.a  # type: ignore[misc]
    m = Mutable()
    m.n = 3
    assert m == Mutable(3) and m.items == [] and Mutable().items is not m.items
    with pytest.raises(TypeError):
        hash(m)
    with pytest.raises(TypeError, match="no field"):
        records.replace(r, nope=1)
    with pytest.raises(TypeError):
        R()  # type: ignore[call-arg]


def test_what_a_record_cannot_be_is_refused() -> None:
    with pytest.raises(TypeError, match="follows default"):
        @records.dataclass
        class _Bad:
            a: int = 0
            b: int  # type: ignore[misc]
    with pytest.raises(ValueError, match="mutable default"):
        @records.dataclass
        class _Mutable:
            a: list[int] = []
    with pytest.raises(TypeError):
        records.field(default=1, default_factory=list)


def test_the_model_is_made_of_records() -> None:
    """The model's classes (and evolve, the hot path's replace) are records."""
    lk = Link("eth0", 2, "veth", 1500, None, "up", True, True, LinkStats())
    assert records.record_fields(Sandbox) == tuple(f.name for f in dataclasses.fields(Sandbox))
    assert evolve(lk, mtu=9000) == dataclasses.replace(lk, mtu=9000)
    assert evolve(lk, mtu=9000).stats is lk.stats
    with pytest.raises(TypeError, match="no field"):
        evolve(lk, nope=1)
    typed: Any = Sandbox.__init__
    assert typed.__qualname__ == "Sandbox.__init__"


def test_a_record_subclass_keeps_its_bases_fields() -> None:
    @records.dataclass(frozen=True)
    class Sub(R):
        e: int = 0

    assert [f.name for f in dataclasses.fields(Sub)] == ["a", "b", "c", "d", "e"]
    assert dataclasses.fields(Sub)[0].type == "int"  # the base's annotation
    assert Sub(1, e=5) == Sub(1, None, {}, (), 5) and Sub(1).e == 0


def test_init_is_compiled_for_its_own_class_when_a_first_object_is_built() -> None:
    """A one-shot command never compiles the __init__ of a class it builds no object of;
    the first object, even one of a plain subclass, compiles the record's own."""
    @records.dataclass(frozen=True)
    class Late:
        a: int
        b: str = "x"

    class Plain(Late):  # not a record: built by Late's __init__
        pass

    first = Late.__dict__["__init__"]
    p = Plain(1)
    assert Late.__dict__["__init__"] is not first and "__init__" not in Plain.__dict__
    assert p.__dict__ == {"a": 1, "b": "x"}
    assert Late(2, b="y") == Late(2, "y") and Late.__dict__["__init__"].__qualname__.endswith(
        "Late.__init__")
    with pytest.raises(TypeError):
        Late()  # type: ignore[call-arg]
