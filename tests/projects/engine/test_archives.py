"""The archive reader on real zips written here: listing checks, top folder, streamed reading, model plans."""

from __future__ import annotations

import hashlib
import struct
import tracemalloc
import zipfile
from contextlib import closing
from pathlib import Path

import pytest

from projects.engine.archives import (
    ArchiveError,
    ArchiveLimits,
    ArchiveRefused,
    Inflation,
    NotAZipError,
    list_zip,
    read_members,
    strip_top_folder,
)
from projects.engine.formats import ModelFormatError, PickleCheckpointError, plan_model_archive

LIMITS = ArchiveLimits(
    max_uncompressed_bytes=1024**3,
    max_members=1000,
    uncompressed_setting="TEST_MAX_BYTES",
    members_setting="TEST_MAX_FILES",
)


def make_zip(path: Path, entries, compression=zipfile.ZIP_DEFLATED) -> Path:
    """A zip of (name or ZipInfo, bytes) entries."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for entry, data in entries:
            archive.writestr(entry, data)
    return path


def read_all(path: Path, limits: ArchiveLimits = LIMITS, chunk: int = 64 * 1024) -> dict[str, bytes]:
    listing = list_zip(path, limits, path.name)
    out = {}
    with closing(read_members(path, listing.members, Inflation(limits, path.name, listing.declared_bytes))) as members:
        for member, stream in members:
            parts = []
            while data := stream.read(chunk):
                parts.append(data)
            out[member.path] = b"".join(parts)
    return out


def patch_sizes(path: Path, declare: int) -> None:
    """Make the (single member's) local header and directory lie about its uncompressed size."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 22, declare)
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declare)
    path.write_bytes(bytes(data))


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_members must be a positive integer"):
        ArchiveLimits(max_uncompressed_bytes=10, max_members=0)
    with pytest.raises(ValueError, match="max_uncompressed_bytes"):
        ArchiveLimits(max_uncompressed_bytes=True, max_members=3)


def test_listing_normalises_paths_skips_system_files_and_sorts(tmp_path):
    path = make_zip(
        tmp_path / "a.zip",
        [
            ("model/b.txt", b"b"),
            ("model/./a.txt", b"a"),
            ("model/sub/", b""),
            ("__MACOSX/model/._a.txt", b"x"),
            ("model/.DS_Store", b"x"),
            ("model/.cache/huggingface/x.metadata", b"x"),
            ("model\\c.txt", b"c"),
        ],
    )
    listing = list_zip(path, LIMITS, "a.zip")
    assert [m.path for m in listing.members] == ["model/a.txt", "model/b.txt", "model/c.txt"]
    assert [m.size for m in listing.members] == [1, 1, 1]
    assert sorted(listing.skipped) == sorted(
        ["model/sub/", "__MACOSX/model/._a.txt", "model/.DS_Store", "model/.cache/huggingface/x.metadata"]
    )
    assert listing.declared_bytes == 6
    folder, stripped = strip_top_folder(listing.members)
    assert folder == "model" and [m.path for m in stripped] == ["a.txt", "b.txt", "c.txt"]
    assert stripped[0].info.filename == "model/./a.txt"  # the entry itself is untouched


def test_top_folder_is_only_stripped_when_everything_is_in_it(tmp_path):
    flat = list_zip(make_zip(tmp_path / "flat.zip", [("config.json", b"{}"), ("x/y.txt", b"y")]), LIMITS).members
    assert strip_top_folder(flat) == ("", flat)
    two = list_zip(make_zip(tmp_path / "two.zip", [("a/config.json", b"{}"), ("b/y.txt", b"y")]), LIMITS).members
    assert strip_top_folder(two)[0] == ""
    nested = list_zip(make_zip(tmp_path / "nested.zip", [("a/b/config.json", b"{}")]), LIMITS).members
    assert [m.path for m in strip_top_folder(nested)[1]] == ["b/config.json"]  # one level only


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../evil.txt", r"contains a path that leaves the archive \(“\.\./evil\.txt”\)"),
        ("docs/../../evil.txt", "leaves the archive"),
        ("/etc/passwd", r"contains an absolute path \(“/etc/passwd”\)"),
        ("C:/windows/x.txt", "absolute path"),
    ],
)
def test_escaping_paths_are_refused(tmp_path, entry, message):
    path = make_zip(tmp_path / "escape.zip", [("ok.txt", b"fine"), (zipfile.ZipInfo(entry), b"x")])
    with pytest.raises(ArchiveRefused, match=message):
        list_zip(path, LIMITS, "escape.zip")


def test_links_encryption_duplicates_and_unknown_methods_are_refused(tmp_path):
    link = zipfile.ZipInfo("link.txt")
    link.external_attr = 0o120777 << 16
    with pytest.raises(ArchiveRefused, match="symbolic link .*“link.txt”.*put the files themselves in the zip"):
        list_zip(make_zip(tmp_path / "link.zip", [(link, b"/etc/passwd")]), LIMITS, "link.zip")

    encrypted = make_zip(tmp_path / "secret.zip", [("a.txt", b"secret")])
    data = bytearray(encrypted.read_bytes())
    struct.pack_into("<H", data, data.rfind(b"PK\x01\x02") + 8, 0x1)  # directory: "encrypted" flag
    encrypted.write_bytes(bytes(data))
    with pytest.raises(ArchiveRefused, match="“secret.zip” is encrypted .*upload an archive without a password"):
        list_zip(encrypted, LIMITS, "secret.zip")

    with pytest.warns(UserWarning, match="Duplicate name"):
        twice = make_zip(tmp_path / "twice.zip", [("a/x.txt", b"1"), ("a/x.txt", b"2")])
    with pytest.raises(ArchiveRefused, match="contains “a/x.txt” twice"):
        list_zip(twice, LIMITS, "twice.zip")

    odd = make_zip(tmp_path / "odd.zip", [("a.txt", b"x" * 100)], compression=zipfile.ZIP_STORED)
    data = bytearray(odd.read_bytes())
    struct.pack_into("<H", data, data.rfind(b"PK\x01\x02") + 10, 99)  # directory: compression method 99
    odd.write_bytes(bytes(data))
    with pytest.raises(ArchiveRefused, match="zip method 99"):
        list_zip(odd, LIMITS, "odd.zip")


def test_too_many_entries_and_declared_bombs_are_refused_before_inflating(tmp_path):
    many = make_zip(tmp_path / "many.zip", [(f"{i}.txt", b"x") for i in range(5)])
    small = ArchiveLimits(max_uncompressed_bytes=1024 * 1024, max_members=3, members_setting="TEST_MAX_FILES")
    with pytest.raises(ArchiveRefused, match=r"has 5 entries, more than the limit of 3 \(TEST_MAX_FILES\)"):
        list_zip(many, small, "many.zip")
    bomb = make_zip(tmp_path / "bomb.zip", [("zeros.bin", b"\0" * (8 * 1024 * 1024))])
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(
        ArchiveRefused,
        match=r"“bomb.zip” declares 8,388,608 bytes of uncompressed data, more than the "
        r"limit of 1,048,576: it is refused \(a zip bomb",
    ):
        list_zip(bomb, small, "bomb.zip")


def test_not_a_zip_and_damaged_zips_are_told_apart(tmp_path):
    text = tmp_path / "notes.zip"
    text.write_text("just text\n")
    with pytest.raises(NotAZipError, match="“notes.zip” is not a zip archive"):
        list_zip(text, LIMITS, "notes.zip")
    whole = make_zip(tmp_path / "whole.zip", [("a.txt", b"a" * 1000), ("b.txt", b"b" * 1000)]).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[: len(whole) // 2])  # the end record is gone
    with pytest.raises(NotAZipError):
        list_zip(cut, LIMITS, "cut.zip")
    garbled = tmp_path / "garbled.zip"
    at = whole.rfind(b"PK\x01\x02")
    garbled.write_bytes(whole[:at] + b"XXXX" + whole[at + 4 :])  # a directory entry is broken
    with pytest.raises(ArchiveError, match="“garbled.zip” is not a valid zip archive .*create it again"):
        list_zip(garbled, LIMITS, "garbled.zip")


def test_members_are_read_exactly_whatever_the_compression(tmp_path):
    payload = {f"f{i}.bin": hashlib.sha256(str(i).encode()).digest() * (1000 * (i + 1)) for i in range(3)}
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        path = make_zip(tmp_path / f"m{method}.zip", payload.items(), compression=method)
        assert read_all(path) == payload
        assert read_all(path, chunk=7) == payload  # odd chunk sizes too


def test_unread_rest_of_a_member_is_counted_and_early_stop_reads_nothing_more(tmp_path):
    path = make_zip(tmp_path / "two.zip", [("a.txt", b"a" * 5000), ("b.txt", b"b" * 5000)])
    listing = list_zip(path, LIMITS)
    inflation = Inflation(LIMITS, "two.zip", listing.declared_bytes)
    for _member, stream in read_members(path, listing.members, inflation):
        stream.read(10)  # the rest is read (and counted) before the next member
    assert inflation.done == 10_000
    inflation = Inflation(LIMITS, "two.zip", listing.declared_bytes)
    with closing(read_members(path, listing.members, inflation)) as members:
        for _member, stream in members:
            stream.read(10)
            break
    assert inflation.done == 10


def test_a_lying_directory_stops_at_the_cap_and_a_wrong_size_is_refused(tmp_path):
    limits = ArchiveLimits(max_uncompressed_bytes=1024 * 1024, max_members=10, uncompressed_setting="TEST_MAX_BYTES")
    liar = make_zip(tmp_path / "liar.zip", [("zeros.bin", b"\0" * (50 * 1024 * 1024))])
    patch_sizes(liar, 1000)
    listing = list_zip(liar, limits, "liar.zip")
    assert listing.declared_bytes == 1000
    inflation = Inflation(limits, "liar.zip", listing.declared_bytes)
    with pytest.raises(
        ArchiveRefused,
        match=r"“liar.zip” inflates past the limit of 1,048,576 bytes of uncompressed data "
        r"\(TEST_MAX_BYTES\) while reading “zeros.bin”, although its directory declares 1,000",
    ):
        for _, stream in read_members(liar, listing.members, inflation):
            while stream.read(256 * 1024):
                pass
    assert inflation.done <= limits.max_uncompressed_bytes + 256 * 1024  # stopped at the cap, not at 50 MiB
    small_liar = make_zip(tmp_path / "small-liar.zip", [("zeros.bin", b"\0" * 5000)])
    patch_sizes(small_liar, 1000)
    with pytest.raises(
        ArchiveRefused,
        match=r"“zeros.bin” in “small-liar.zip” holds 5,000 bytes but the archive's directory says 1,000",
    ):
        read_all(small_liar)


def test_damaged_member_data_is_an_archive_error(tmp_path):
    data = hashlib.sha256(b"x").digest() * 4000
    path = make_zip(tmp_path / "crc.zip", [("w.bin", data)], compression=zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    raw[30 + len("w.bin") + 100] ^= 0xFF  # one byte of the stored data flipped: the CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="“w.bin” in “crc.zip” is damaged .*CRC.*create the zip again"):
        read_all(path)
    deflated = make_zip(tmp_path / "inflate.zip", [("w.bin", b"text " * 20_000)])
    raw = bytearray(deflated.read_bytes())
    for i in range(40, 200):
        raw[i] = 0xFF  # the deflate stream itself is garbage
    deflated.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="damaged"):
        read_all(deflated)


def test_reading_a_large_member_keeps_memory_flat(tmp_path):
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("big.bin", "w") as out:
        block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
        for _ in range(64):
            out.write(block)
    listing = list_zip(path, LIMITS)
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        for _, stream in read_members(path, listing.members, Inflation(LIMITS, "big.zip", listing.declared_bytes)):
            while chunk := stream.read(1024 * 1024):
                digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == hashlib.sha256(block * 64).hexdigest()
    assert peak < 8 * 1024 * 1024, f"reading 64 MiB peaked at {peak:,} bytes"


# --- Zipped model folders (formats.plan_model_archive) -----------------------------------


def model_zip(tmp_path: Path, names: list[str], name: str = "model.zip") -> list:
    path = make_zip(tmp_path / name, [(n, b"{}") for n in names])
    return list_zip(path, LIMITS, name).members


def test_model_plan_strips_the_folder_and_leaves_out_what_is_not_a_model_file(tmp_path):
    members = model_zip(
        tmp_path,
        [
            "tiny/config.json",
            "tiny/model-00001-of-00002.safetensors",
            "tiny/model-00002-of-00002.safetensors",
            "tiny/model.safetensors.index.json",
            "tiny/tokenizer.json",
            "tiny/README.md",
            "tiny/images/logo.png",
        ],
    )
    plan = plan_model_archive(members, "model.zip")
    assert plan.folder == "tiny"
    assert [m.path for m in plan.files] == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
    assert plan.left_out == ["tiny/README.md", "tiny/images/logo.png"]
    gguf = plan_model_archive(model_zip(tmp_path, ["tiny.gguf"], "g.zip"), "g.zip")
    assert [m.path for m in gguf.files] == ["tiny.gguf"] and gguf.folder == ""


@pytest.mark.parametrize(
    ("names", "error", "message"),
    [
        (
            ["m/config.json", "m/model.safetensors", "m/pytorch_model.bin"],
            PickleCheckpointError,
            r"model.zip: refused: the zip holds PyTorch pickle checkpoints \(pytorch_model.bin\); "
            r"leave them out of the zip\. "
            r"PyTorch pickle checkpoints can run code when loaded",
        ),
        (
            ["config.json", "model.safetensors", "original/consolidated.00.pth"],
            PickleCheckpointError,
            "consolidated.00.pth",
        ),
        (
            ["m/model.safetensors", "m/tokenizer.json"],
            ModelFormatError,
            "model.zip: missing config.json: a Hugging Face model folder needs config.json",
        ),
        (["m/model.safetensors", "m/adapter_config.json"], ModelFormatError, "LoRA adapter"),
        (
            ["a/b/config.json", "a/b/model.safetensors"],
            ModelFormatError,
            r"the weights are in a subfolder \(b/model.safetensors\)",
        ),
        (
            ["config.json", "weights/model.safetensors", "m/config.json"],
            ModelFormatError,
            "the weights are in a subfolder",
        ),
        (
            ["model.safetensors", "sub/config.json"],
            ModelFormatError,
            r"missing config.json at the top of the zip \(there is sub/config.json\)",
        ),
        (
            ["config.json", "tokenizer.json", "README.md"],
            ModelFormatError,
            "the zip holds no .safetensors or .gguf files",
        ),
    ],
)
def test_model_plan_refusals(tmp_path, names, error, message):
    with pytest.raises(error, match=message):
        plan_model_archive(model_zip(tmp_path, names), "model.zip")


def test_archive_errors_are_value_errors():
    assert issubclass(ArchiveError, ValueError)
    assert issubclass(ArchiveRefused, ArchiveError) and issubclass(NotAZipError, ArchiveError)
