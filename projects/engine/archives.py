"""Zip archives people upload: checked before anything is inflated, then read a member at a time.

One module for every kind of upload that may come zipped (datasets of text files, Hugging Face
model folders), so that an archive is judged the same way wherever it arrives:

* :func:`list_zip` reads the archive's directory and refuses, before inflating a byte, what must
  not be unpacked: more entries than :attr:`ArchiveLimits.max_members` (counted from the
  end-of-archive record, before Python's ``zipfile`` loads the whole directory), more declared
  uncompressed bytes than :attr:`ArchiveLimits.max_uncompressed_bytes` (a zip bomb), absolute
  paths, paths that leave the archive (``..``), symbolic links, encrypted members, the same name
  twice, compression methods Python cannot inflate. Folders and system files (``__MACOSX/``,
  ``.DS_Store``, anything in a hidden folder) are listed as skipped, not refused.
* :func:`strip_top_folder` drops the one folder a zip of a folder usually wraps everything in.
* :func:`read_members` opens the members one after the other as streams that count what really
  inflates (:class:`Inflation`): a directory that lies about sizes cannot hide a bomb, because
  reading stops at the cap, and a member that inflates to another size than declared is refused.
  Memory stays at what the caller reads at a time; nothing is ever extracted to a path the
  archive chose, since callers copy streams into storage of their own (content-addressed blobs).

Every problem raises :class:`ArchiveError` (a ``ValueError``): :class:`NotAZipError` when the file is
not a zip at all, :class:`ArchiveRefused` when it is one that is refused whole, plain
:class:`ArchiveError` when it is damaged. Messages name the archive (and the member), say what is
wrong and what to do; callers that know more (which setting a cap comes from) pass it in
:class:`ArchiveLimits`.

No Django imports: this module is importable and testable on its own.
"""

from __future__ import annotations

import copy
import io
import lzma
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

__all__ = [
    "ZIP_METHODS",
    "ArchiveError",
    "ArchiveLimits",
    "ArchiveListing",
    "ArchiveMember",
    "ArchiveRefused",
    "Inflation",
    "NotAZipError",
    "list_zip",
    "read_members",
    "strip_top_folder",
]

#: Compression methods Python's zipfile inflates (stored, deflate, bzip2, lzma).
ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
#: Bytes of central directory allowed per entry (names up to 64 KiB are legal, but rare), plus a margin.
_DIRECTORY_BYTES_PER_ENTRY = 1024
_DIRECTORY_MARGIN = 1024**2
# Errors the decompressors raise on damaged data (zipfile raises BadZipFile for a bad CRC).
_DAMAGE = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError)


class ArchiveError(ValueError):
    """The archive cannot be read: damaged, truncated, or not a zip. The message says what to do."""


class NotAZipError(ArchiveError):
    """The bytes are not a zip archive at all (no end-of-archive record)."""


class ArchiveRefused(ArchiveError):
    """A readable zip that is refused whole: too large when inflated, too many entries, paths that
    leave the archive, links, encryption, duplicate names, unknown compression."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps that keep one archive from exhausting disk, memory or time."""

    max_uncompressed_bytes: int
    """Most bytes the members may inflate to, in all (declared, and actually inflated)."""
    max_members: int
    """Most entries (files and folders) the archive may have."""
    uncompressed_setting: str = ""
    """The setting ``max_uncompressed_bytes`` comes from, named in messages (``DATASET_MAX_UNCOMPRESSED_BYTES``)."""
    members_setting: str = ""
    """The setting ``max_members`` comes from, named in messages."""

    def __post_init__(self) -> None:
        for name in ("max_uncompressed_bytes", "max_members"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ArchiveLimits.{name} must be a positive integer, not {value!r}.")

    def _named(self, setting: str) -> str:
        return f" ({setting})" if setting else ""


class ArchiveMember(NamedTuple):
    """A file in the archive."""

    path: str
    """Its path inside the archive, normalised: ``/``-separated, no empty or ``.`` parts."""
    info: zipfile.ZipInfo
    """The directory entry (``info.filename`` is the name as the archive spells it)."""

    @property
    def size(self) -> int:
        """Uncompressed size, as the directory declares it (checked while reading)."""
        return self.info.file_size


class ArchiveListing(NamedTuple):
    """What :func:`list_zip` found."""

    members: list[ArchiveMember]
    """The files, in path order."""
    skipped: list[str]
    """Folders and system files left out (``__MACOSX/``, ``.DS_Store``, hidden folders), as named in the archive."""
    declared_bytes: int
    """Uncompressed bytes the directory declares for all entries."""


def _where(name: str) -> str:
    return f"“{name}”"


def _end_record(handle: BinaryIO, size: int, name: str) -> tuple[int, int]:
    """(entries, central directory size) from the end-of-archive record (zip64 where it says so).

    ``zipfile.ZipFile`` loads the whole central directory into memory; reading the counts first
    lets a crafted archive that declares millions of entries be refused before that.
    """
    tail_size = min(size, 22 + 65535 + 20)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise NotAZipError(f"{_where(name)} is not a zip archive (no end-of-archive record)")
    # End record: signature, disk, directory disk, entries on disk, entries, directory size, offset, comment length.
    entries, directory_size = struct.unpack("<HI", tail[at + 10 : at + 16])
    if (entries == 0xFFFF or directory_size == 0xFFFFFFFF) and at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        (zip64_offset,) = struct.unpack("<Q", tail[at - 12 : at - 4])
        handle.seek(zip64_offset)
        record = handle.read(56)
        if record[:4] == b"PK\x06\x06" and len(record) >= 56:
            entries, directory_size = struct.unpack("<QQ", record[32:48])
    return entries, directory_size


def _is_link(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def list_zip(path: str | Path, limits: ArchiveLimits, name: str | None = None) -> ArchiveListing:
    """Read a zip's directory and refuse what must not be inflated (see the module's docstring).

    ``name`` is the archive as the person knows it (a blob's path means nothing to them).
    Raises :class:`NotAZipError`, :class:`ArchiveRefused` or :class:`ArchiveError`.
    """
    name = name or str(path)
    where = _where(name)
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        entries, directory_size = _end_record(handle, size, name)
        if entries > limits.max_members:
            raise ArchiveRefused(
                f"{where} has {entries:,} entries, more than the limit of {limits.max_members:,}"
                f"{limits._named(limits.members_setting)}: it is refused; split it into smaller archives."
            )
        if directory_size > limits.max_members * _DIRECTORY_BYTES_PER_ENTRY + _DIRECTORY_MARGIN:
            raise ArchiveRefused(
                f"{where} has a directory of {directory_size:,} bytes, too large for {entries:,} entries: it is "
                "refused."
            )
        try:
            with zipfile.ZipFile(handle) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
            raise ArchiveError(f"{where} is not a valid zip archive ({exc}); create it again and upload it.") from None
    if len(infos) > limits.max_members:
        raise ArchiveRefused(
            f"{where} has {len(infos):,} entries, more than the limit of {limits.max_members:,}"
            f"{limits._named(limits.members_setting)}: it is refused."
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_uncompressed_bytes:
        raise ArchiveRefused(
            f"{where} declares {declared:,} bytes of uncompressed data, more than the limit of "
            f"{limits.max_uncompressed_bytes:,}{limits._named(limits.uncompressed_setting)}: "
            "it is refused (a zip bomb, or simply too large)."
        )
    members: list[ArchiveMember] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for info in infos:
        entry = info.filename
        normalised = entry.replace("\\", "/")
        parts = [p for p in normalised.split("/") if p not in ("", ".")]
        if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
            raise ArchiveRefused(
                f"{where} contains an absolute path (“{entry}”): archives with absolute paths are refused."
            )
        if ".." in parts:
            raise ArchiveRefused(f"{where} contains a path that leaves the archive (“{entry}”): it is refused.")
        if _is_link(info):
            raise ArchiveRefused(
                f"{where} contains a symbolic link (“{entry}”): links are refused; put the files themselves in the zip."
            )
        if info.flag_bits & 0x1:
            raise ArchiveRefused(f"{where} is encrypted (“{entry}”): upload an archive without a password.")
        if info.is_dir() or not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
            skipped.append(entry)
            continue
        member_path = "/".join(parts)
        if member_path in seen:
            raise ArchiveRefused(f"{where} contains “{member_path}” twice: it is refused; create the zip again.")
        seen.add(member_path)
        if info.compress_type not in ZIP_METHODS:
            raise ArchiveRefused(
                f"{where} compresses “{entry}” with a method this platform does not read (zip method "
                f"{info.compress_type}); "
                "use ordinary (deflate) compression, or none."
            )
        members.append(ArchiveMember(member_path, info))
    members.sort(key=lambda member: member.path)
    return ArchiveListing(members, skipped, declared)


def strip_top_folder(members: Sequence[ArchiveMember]) -> tuple[str, list[ArchiveMember]]:
    """Drop the one folder every member is in (a zip of a folder), if there is one.

    Returns the folder's name ("" when there is none: a file at the top, or several folders) and
    the members with their paths inside it.
    """
    tops = {member.path.split("/", 1)[0] for member in members}
    if len(tops) != 1 or any("/" not in member.path for member in members):
        return "", list(members)
    folder = tops.pop()
    return folder, [member._replace(path=member.path.split("/", 1)[1]) for member in members]


class Inflation:
    """Counts the bytes inflated from one archive and refuses past ``limits.max_uncompressed_bytes``.

    ``declared`` (the directory's total) is named in the refusal, which then reads as what it is:
    a directory that lied. ``progress(done, member)`` is called as bytes inflate.
    """

    def __init__(
        self,
        limits: ArchiveLimits,
        name: str,
        declared: int,
        progress: Callable[[int, ArchiveMember], None] | None = None,
    ) -> None:
        self.limits = limits
        self.name = name
        self.declared = declared
        self.progress = progress
        self.done = 0
        """Bytes inflated so far, all members together."""

    def add(self, n: int, member: ArchiveMember) -> None:
        self.done += n
        if self.done > self.limits.max_uncompressed_bytes:
            raise ArchiveRefused(
                f"{_where(self.name)} inflates past the limit of {self.limits.max_uncompressed_bytes:,} bytes of "
                "uncompressed "
                f"data{self.limits._named(self.limits.uncompressed_setting)} while reading “{member.info.filename}”, "
                "although "
                f"its directory declares {self.declared:,} bytes in all: it is refused (a zip bomb, or simply too "
                "large)."
            )
        if self.progress is not None and n:
            self.progress(self.done, member)


class _MemberStream(io.RawIOBase):
    """A member's bytes as they inflate: counted (:class:`Inflation`), damage reported as :class:`ArchiveError`."""

    def __init__(self, source: BinaryIO, member: ArchiveMember, inflation: Inflation, where: str) -> None:
        self._source = source
        self._member = member
        self._inflation = inflation
        self._where = where
        self.count = 0
        """Bytes of this member inflated so far."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        try:
            data = self._source.read(len(buffer))
        except _DAMAGE as exc:
            raise ArchiveError(
                f"“{self._member.info.filename}” in {self._where} is damaged ({exc}); create the zip again and upload "
                "it."
            ) from None
        self.count += len(data)
        self._inflation.add(len(data), self._member)
        buffer[: len(data)] = data
        return len(data)


def read_members(
    path: str | Path, members: Sequence[ArchiveMember], inflation: Inflation
) -> Iterator[tuple[ArchiveMember, BinaryIO]]:
    """Open ``members`` one after the other; yields ``(member, stream)``.

    Read each stream in chunks (to its end, or not: what is left is read here and counted before
    the next member is opened). The stream raises :class:`ArchiveRefused` once the archive inflates
    past the cap and :class:`ArchiveError` on damaged data; a member that inflates to another size
    than its directory entry says is refused. Close the iterator (``contextlib.closing``) to stop
    early without reading the rest.
    """
    where = _where(inflation.name)
    try:
        with zipfile.ZipFile(path) as archive:
            for member in members:
                # Do not let zipfile stop at the size the directory declares (it would check the CRC
                # there and call the archive damaged): count what really inflates, so a directory
                # that lies cannot hide a bomb. zipfile still checks the CRC at the member's end.
                unbounded = copy.copy(member.info)
                unbounded.file_size = 1 << 62
                with archive.open(unbounded) as raw:
                    stream = _MemberStream(raw, member, inflation, where)
                    yield member, stream
                    while stream.read(1024 * 1024):  # what the caller left
                        pass
                if stream.count != member.size:
                    raise ArchiveRefused(
                        f"“{member.info.filename}” in {where} holds {stream.count:,} bytes but the archive's directory "
                        "says "
                        f"{member.size:,}: the archive is damaged or crafted, and is refused."
                    )
    except _DAMAGE as exc:
        raise ArchiveError(f"{where} is damaged ({exc}); create the zip again and upload it.") from None
