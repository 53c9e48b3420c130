"""Line streams with a bound on each line's length, for any encoding."""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterator
from typing import BinaryIO

from .encodings import detect_encoding, encoding_label
from .errors import BinaryFileError, DatasetFormatError
from .limits import _BYTE_ENCODINGS, SNIFF_BYTES

# --- Streams -------------------------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """A raw stream that yields ``head`` and then whatever ``rest`` still holds."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Lines:
    """Decoded lines of a byte stream, each with its ending, never longer than ``limit`` characters.

    For byte-oriented encodings (UTF-8, Windows-1252) lines are cut before decoding, so a decoding
    error names its exact line and byte; UTF-16/32 go through ``io.TextIOWrapper``.
    """

    def __init__(
        self,
        binary: BinaryIO,
        encoding: str,
        where: str,
        limit: int,
        limit_name: str,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.where, self.encoding, self.limit, self.limit_name = where, encoding, limit, limit_name
        #: Asked before each line: ends the input early (a bounded look, e.g. the synchronous checks).
        self.should_stop = should_stop
        self.number = 0
        self.bytes_done = 0
        self._binary = binary
        self._text: io.TextIOWrapper | None = None
        if encoding == "utf-8-sig":
            binary.read(len(codecs.BOM_UTF8))
            self.bytes_done = len(codecs.BOM_UTF8)
            self._codec = "utf-8"
        elif encoding in _BYTE_ENCODINGS:
            self._codec = encoding
        else:
            self._codec = encoding
            self._text = io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")

    def __iter__(self) -> Iterator[str]:
        return self

    def _too_long(self) -> DatasetFormatError:
        return DatasetFormatError(
            f"{self.where}, line {self.number} is longer than {self.limit:,} characters ({self.limit_name}): "
            "split it into smaller documents."
        )

    def __next__(self) -> str:
        if self.should_stop is not None and self.should_stop():
            raise StopIteration
        if self._text is not None:
            try:
                line = self._text.readline(self.limit + 1)
            except UnicodeDecodeError as exc:
                raise DatasetFormatError(
                    f"{self.where}, near line {self.number + 1}: the text is not valid {encoding_label(self.encoding)} "
                    f"({exc.reason}). Save the file as UTF-8 and upload it again."
                ) from exc
            if not line:
                raise StopIteration
            self.number += 1
            self.bytes_done += len(line) * (2 if self.encoding == "utf-16" else 4)  # an estimate, for progress
            if len(line.rstrip("\r\n")) > self.limit:
                raise self._too_long()
            return line
        # UTF-8 uses at most 4 bytes a character: a raw line this long without a newline is too long.
        limit_bytes = 4 * self.limit + 4
        raw = self._binary.readline(limit_bytes)
        if not raw:
            raise StopIteration
        self.number += 1
        start = self.bytes_done
        self.bytes_done += len(raw)
        if len(raw) >= limit_bytes and not raw.endswith(b"\n"):
            raise self._too_long()
        try:
            line = raw.decode(self._codec)
        except UnicodeDecodeError as exc:
            detected = (
                ""
                if self.number == 1
                else f" (the first {SNIFF_BYTES // 1024} KiB read as {encoding_label(self.encoding)})"
            )
            raise DatasetFormatError(
                f"{self.where}, line {self.number} is not valid {encoding_label(self.encoding)}{detected}: byte "
                f"0x{raw[exc.start]:02x} "
                f"at byte {start + exc.start} of the file. Save the whole file as UTF-8 and upload it again."
            ) from exc
        if len(line.rstrip("\r\n")) > self.limit:
            raise self._too_long()
        if "\x00" in line:
            raise BinaryFileError(
                f"{self.where}, line {self.number} contains a NUL character: this looks like binary data, not text."
            )
        return line


def _strip_ending(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def _open_text(binary: BinaryIO, where: str, complete_size: int | None = None) -> tuple[str, BinaryIO]:
    """Sniff ``binary``'s encoding; returns it and a stream that starts again at byte 0."""
    head = binary.read(SNIFF_BYTES)
    if not head:
        return "utf-8", io.BytesIO(b"")
    encoding = detect_encoding(head, where, complete=len(head) < SNIFF_BYTES)
    return encoding, io.BufferedReader(_Prefixed(head, binary), buffer_size=256 * 1024)
