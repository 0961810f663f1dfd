"""gzip of an answer made of parts, compressing again only the parts that changed.

A scrape of a busy node is megabytes of text, and most of its family blocks are byte for byte
the same objects as at the last scrape (kata_top.formats.prom_cache.TextCache hands them out
so). Each part is deflated on its own and ended with a full flush, which byte-aligns the
output and resets the compressor's history, so a part's compressed bytes do not depend on
what came before them: they can be kept and put into the next answer as they are. The parts,
one final empty block, the CRC-32 of the whole text and its length make one ordinary gzip
member (RFC 1951 §3.2.3, RFC 1952). Parts are family blocks of tens of kilobytes, beyond
deflate's 32 KiB window of each other anyway, so the ratio stays what one stream gets.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

# magic, deflate, no flags, no mtime, "fastest" (level 1), unknown OS (RFC 1952 §2.3)
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # BFINAL=1, fixed Huffman, end-of-block


def _deflate(part: bytes, level: int) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(part) + c.flush(zlib.Z_FULL_FLUSH)


class PartsGzip:
    """Not thread-safe: the exporter calls it under its render lock."""

    def __init__(self, level: int = 1) -> None:
        self.level = level
        self._memo: dict[int, tuple[bytes, bytes]] = {}  # id(part) → (part, its deflate)
        self.reused = 0  # parts whose deflate was reused (for tests and bench/)

    def compress(self, parts: Sequence[bytes]) -> bytes:
        memo: dict[int, tuple[bytes, bytes]] = {}
        out = [_HEADER]
        crc = 0
        size = 0
        for part in parts:
            known = self._memo.get(id(part))
            if known is not None and known[0] is part:  # kept alive by the memo: same id
                deflated = known[1]
                self.reused += 1
            else:
                deflated = _deflate(part, self.level)
            memo[id(part)] = (part, deflated)
            out.append(deflated)
            crc = zlib.crc32(part, crc)
            size += len(part)
        out.append(_FINAL_EMPTY_BLOCK)
        out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
        self._memo = memo
        return b"".join(out)
