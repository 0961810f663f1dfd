"""Crafted run roots: Kata's state files as a sick or hostile node could have them."""

from __future__ import annotations

import json
import os
from typing import Any

import jsonschema

from kata_top.engine import Engine, EngineOptions
from kata_top.formats import jsonout
from kata_top.model import Snapshot
from tests.helpers import ROOT

SCHEMA_PATH = os.path.join(ROOT, "kata_top", "formats", "schema", "snapshot-1.json")
with open(SCHEMA_PATH) as _fh:
    SCHEMA = json.load(_fh)
HEALTHY = "a" * 64


def persist(netns: str = "/proc/self/ns/net", name: str = "web-0", **extra: Any) -> dict[str, Any]:
    """A minimal Go-runtime persist.json, as Kata writes its keys."""
    doc: dict[str, Any] = {
        "State": "running",
        "HypervisorState": {"Type": "qemu", "Pid": 0},
        "Network": {"NetworkID": netns, "Endpoints": []},
        "Config": {"ContainerConfigs": [{"Annotations": {
            "io.kubernetes.cri.sandbox-name": name,
            "io.kubernetes.cri.sandbox-namespace": "default"}}]},
    }
    doc.update(extra)
    return doc


def run_root(tmp: Any, sandboxes: dict[str, Any]) -> str:
    """A run root with vc/sbs/<id>/persist.json for each entry: a dict is written as JSON,
    bytes as they are, a callable makes the file itself (FIFO, symlink…)."""
    sbs = os.path.join(str(tmp), "vc", "sbs")
    os.makedirs(sbs, exist_ok=True)
    for sid, content in sandboxes.items():
        d = os.path.join(sbs, sid)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "persist.json")
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            with open(path, "wb") as fh:
                fh.write(content)
        else:
            with open(path, "w") as fh:
                json.dump(content, fh)
    return str(tmp)


def collect(root: str) -> Snapshot:
    engine = Engine(EngineOptions(run_root=root, with_vmm=False))
    try:
        return engine.collect().snapshot
    finally:
        engine.close()


def by_id(snap: Snapshot) -> dict[str, Any]:
    return {sb.id: sb for sb in snap.sandboxes}


def assert_schema_valid(snap: Snapshot) -> None:
    jsonschema.validate(jsonout.snapshot_to_dict(snap), SCHEMA)
