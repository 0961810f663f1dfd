"""The collection engine: one Snapshot per cycle from state files, /proc, netlink and monitors
(the pipeline's first stage, kata_top/pipeline.py).

`core.py` runs the cycle, `sandbox.py` builds each Sandbox, `vmm_cache.py` paces the VMM
monitors, `beside.py` reads the shim's socket and virtiofsd, `options.py` holds what the
engine is asked and what a collection hands on.
"""

from kata_top.engine.core import Engine, read_one
from kata_top.engine.options import (
    READ_AHEAD_MIN_SHARE,
    TC_BUSY_REFRESH_S,
    UNWATCHED_REFRESH_S,
    VMM_REFRESH_S,
    Collection,
    EngineOptions,
)

__all__ = ["READ_AHEAD_MIN_SHARE", "TC_BUSY_REFRESH_S", "UNWATCHED_REFRESH_S", "VMM_REFRESH_S",
           "Collection", "Engine", "EngineOptions", "read_one"]
