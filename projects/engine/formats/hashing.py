"""SHA-256 per tensor, streamed in bounded chunks: the one place tensor bytes are read."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import replace

from .errors import ModelFormatError
from .limits import HASH_CHUNK_BYTES, ProgressCallback
from .records import ModelInfo, TensorEntry


def hash_tensors(
    info: ModelInfo, progress: ProgressCallback | None = None, *, chunk_size: int = HASH_CHUNK_BYTES
) -> ModelInfo:
    """Return ``info`` with the SHA-256 of every tensor's bytes, streamed in ``chunk_size`` reads.

    Memory stays at one chunk whatever the model's size. Files are read in offset order, so the
    disk sees one sequential pass. ``progress(done_bytes, total_bytes)`` is called at the start,
    about once per chunk, and at the end.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    total = info.n_bytes
    done = reported = 0
    if progress:
        progress(0, total)
    buffer = memoryview(bytearray(chunk_size))
    digests: dict[str, str] = {}
    by_file: dict[str, list[TensorEntry]] = defaultdict(list)
    for record in info.tensors:
        by_file[record.file].append(record)
    for file_name, records in by_file.items():
        with (info.folder / file_name).open("rb", buffering=0) as handle:
            for record in sorted(records, key=lambda r: r.offset):
                handle.seek(record.offset)
                digest = hashlib.sha256()
                left = record.n_bytes
                while left:
                    got = handle.readinto(buffer[: min(chunk_size, left)])
                    if not got:
                        raise ModelFormatError(
                            file_name,
                            f"the file ended inside tensor {record.name!r} while hashing: it changed or was truncated "
                            "after it was inspected; upload it again",
                        )
                    digest.update(buffer[:got])
                    left -= got
                    done += got
                    if progress and done - reported >= chunk_size:
                        progress(done, total)
                        reported = done
                digests[record.name] = digest.hexdigest()
    if progress and reported != total:
        progress(total, total)
    return replace(info, tensors=tuple(replace(t, sha256=digests[t.name]) for t in info.tensors))
