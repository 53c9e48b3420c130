"""A bounded reader for untrusted headers: every length is checked against the file before it is allocated."""

from __future__ import annotations

import struct
from typing import BinaryIO

from .errors import ModelFormatError

# --------------------------------------------------------------------------------------------
# Bounded header reading


class _BoundedReader:
    """Sequential reads that never go past the file's end.

    Every length read from an untrusted header is checked against the bytes actually left before
    anything is read or allocated, so a corrupt count cannot make us loop for ages or ask for
    terabytes; running out of file becomes one clear "truncated" error naming what was being read.
    """

    _U32 = struct.Struct("<I")
    _U64 = struct.Struct("<Q")

    def __init__(self, handle: BinaryIO, size: int, label: str):
        self.handle = handle
        self.size = size
        self.label = label
        self.pos = 0

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def truncated(self, what: str, needed: int) -> ModelFormatError:
        return ModelFormatError(
            self.label,
            f"the file ends at byte {self.size} while reading {what} at byte {self.pos} "
            f"({needed} more bytes needed): the file is truncated or corrupt; upload it again",
        )

    def read(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise self.truncated(what, n)
        data = self.handle.read(n)
        if len(data) != n:  # the file shrank under us
            raise self.truncated(what, n)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise self.truncated(what, n)
        self.handle.seek(n, 1)
        self.pos += n

    def u32(self, what: str) -> int:
        return self._U32.unpack(self.read(4, what))[0]

    def u64(self, what: str) -> int:
        return self._U64.unpack(self.read(8, what))[0]
