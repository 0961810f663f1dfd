"""What the model's records promise: immutable, untracked by the garbage collector, built by
keyword, and `evolve` changes only what it names (the rest the very same objects)."""

from __future__ import annotations

import gc
import inspect

import msgspec
import pytest

from kata_top import model
from kata_top.model import Link, LinkStats, Pod, Sandbox, evolve

CLASSES = [c for _n, c in inspect.getmembers(model, inspect.isclass)
           if issubclass(c, msgspec.Struct) and c.__module__ == model.__name__]


def test_every_model_class_is_frozen_and_untracked() -> None:
    assert len(CLASSES) >= 25
    for cls in CLASSES:
        config = cls.__struct_config__
        assert config.frozen and not config.gc, cls.__name__


def _link() -> Link:
    return Link(name="eth0", ifindex=2, kind="veth", mtu=1500, mac=None, operstate="up",
                up=True, carrier=True, stats=LinkStats(rx_bytes=1))


def test_objects_are_immutable_and_not_tracked() -> None:
    lk = _link()
    with pytest.raises(AttributeError):
        lk.mtu = 9000  # type: ignore[misc]
    assert not gc.is_tracked(lk) and not gc.is_tracked(lk.stats)
    assert lk == _link() and hash(lk) == hash(_link())


def test_evolve_changes_only_what_it_names() -> None:
    lk = _link()
    bigger = evolve(lk, mtu=9000)
    assert bigger.mtu == 9000 and lk.mtu == 1500
    assert bigger.stats is lk.stats and bigger.name is lk.name
    with pytest.raises(TypeError):
        evolve(lk, nope=1)


def _sandbox(sid: str) -> Sandbox:
    return Sandbox(id=sid, runtime="go", state="running",
                   pod=Pod(name="web-0", namespace="default"),
                   hypervisor=model.Hypervisor(kind="qemu", pid=None, alive=False),
                   netns=model.NetnsInfo(path=None, inode=None), network_model="tcfilter")


def test_defaults_are_not_shared_between_objects() -> None:
    a, b = _sandbox("a"), _sandbox("b")
    assert a.rates == b.rates == {} and a.rates is not b.rates
    assert a.configured_rate_limits is not b.configured_rate_limits
