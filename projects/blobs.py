"""Content-addressed blob storage and resumable uploads.

Everything large goes through here: it is written by streaming (bounded memory), named
by its SHA-256, stored once through Django's storage API, and read back as a local path
for the engines (which memory-map files).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from projects.models import Blob, Upload, UploadStatus

#: How much is read or written at a time: large enough for throughput, small for memory.
IO_CHUNK = 4 * 1024 * 1024


class BlobError(ValueError):
    """A file that cannot become a blob, with a message for the person who sent it."""


def uploads_dir() -> Path:
    path = settings.DATA_DIR / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def part_path(upload: Upload) -> Path:
    return uploads_dir() / f"{upload.pk}.part"


def sha256_of(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """SHA-256 of a file, read in bounded chunks."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(IO_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def flush_to_disk(path: Path) -> None:
    """Wait until a file's bytes are on the disk, not only in the page cache (fdatasync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _flush_directory(path: Path) -> None:
    """Make a rename into ``path`` survive a crash (the directory entry is data too)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is still atomic
    finally:
        os.close(fd)


def store_path(path: Path, *, sha256: str | None = None, move: bool = False) -> Blob:
    """Store a local file as a blob (deduplicated). With ``move`` the file is consumed.

    On the local file system the file is renamed into place (no copy) when it can be.
    """
    path = Path(path)
    sha256 = sha256 or sha256_of(path)
    size = path.stat().st_size
    name = Blob.name_for(sha256)
    existing = Blob.objects.filter(sha256=sha256).first()
    if existing is None or not default_storage.exists(existing.storage_name):
        local_root = getattr(default_storage, "location", None)
        if move and local_root is not None:
            target = Path(default_storage.path(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, target)  # atomic: a blob file is complete or absent
            except OSError:  # another file system: copy to a temporary name, then rename
                temporary = target.with_suffix(".incoming")
                shutil.copyfile(path, temporary)
                flush_to_disk(temporary)
                os.replace(temporary, target)
            _flush_directory(target.parent)
        else:
            with open(path, "rb") as handle:
                if default_storage.exists(name):
                    default_storage.delete(name)
                default_storage.save(name, File(handle, name=name))
    if move and path.exists():
        path.unlink()
    try:
        with transaction.atomic():
            blob, _ = Blob.objects.get_or_create(sha256=sha256, defaults={"size": size, "storage_name": name})
    except IntegrityError:  # stored concurrently by someone else: same bytes, same row
        blob = Blob.objects.get(sha256=sha256)
    return blob


def store_stream(stream: BinaryIO, *, max_bytes: int | None = None) -> Blob:
    """Store whatever a stream yields as a blob (spooled to a temporary file while hashing)."""
    uploads = uploads_dir()
    temporary = uploads / f"stream-{os.getpid()}-{timezone.now().timestamp()}.tmp"
    digest = hashlib.sha256()
    written = 0
    try:
        with open(temporary, "wb") as out:
            while chunk := stream.read(IO_CHUNK):
                written += len(chunk)
                if max_bytes is not None and written > max_bytes:
                    raise BlobError(f"The file is larger than the limit of {max_bytes} bytes.")
                digest.update(chunk)
                out.write(chunk)
        return store_path(temporary, sha256=digest.hexdigest(), move=True)
    finally:
        temporary.unlink(missing_ok=True)


def local_path(blob: Blob) -> Path:
    """A path on this machine holding the blob's bytes (engines memory-map files).

    Local storage: the stored file itself. Remote storage (S3 and the like): a copy in
    ``DATA_DIR/blob-cache``, downloaded once by streaming.
    """
    try:
        return Path(default_storage.path(blob.storage_name))
    except NotImplementedError:
        cache = settings.DATA_DIR / "blob-cache" / blob.sha256
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(".partial")
            with default_storage.open(blob.storage_name, "rb") as source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out, IO_CHUNK)
            os.replace(partial, cache)
        return cache


def materialize_folder(files: list[tuple[str, Blob]], folder: Path) -> Path:
    """Lay out blobs as a folder of named files (symbolic links), for engines that need one.

    Hugging Face checkpoints are folders (config.json, shards, index); the blobs are stored by
    hash, so this gives them their names back without copying any bytes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for relative, blob in files:
        # Checked on the names alone: resolving would follow the links already laid out.
        target = Path(os.path.normpath(folder.absolute() / relative))
        if folder.absolute() not in target.parents:
            raise BlobError(f"The path {relative!r} points outside the model's folder.")
        target.parent.mkdir(parents=True, exist_ok=True)
        source = local_path(blob)
        if target.is_symlink() and os.readlink(target) == str(source):
            continue
        # Link under a private name, then rename over: two processes laying out the same folder
        # at once (a deployment and a job, say) never see a missing or half-made link.
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.link")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(source)
        os.replace(temporary, target)
    return folder


def referenced(blob: Blob) -> list[str]:
    """What still uses a blob: a description of each kind of referencing row."""
    uses = []
    for relation in Blob._meta.related_objects:
        count = relation.related_model._default_manager.filter(**{relation.field.name: blob}).count()
        if count:
            uses.append(f"{count} {relation.related_model._meta.verbose_name_plural}")
    return uses


def collect_garbage(only: list[str] | None = None) -> tuple[int, int]:
    """Delete blobs nothing references (or only those of ``only``, SHA-256s). Returns (blobs, bytes)."""
    deleted = freed = 0
    candidates = Blob.objects.all() if only is None else Blob.objects.filter(pk__in=only)
    for blob in candidates.iterator():
        if referenced(blob):
            continue
        with transaction.atomic():
            # Re-check under the row lock: an upload may have just referenced it.
            locked = Blob.objects.select_for_update().filter(pk=blob.pk).first()
            if locked is None or referenced(locked):
                continue
            default_storage.delete(locked.storage_name)
            locked.delete()
        deleted += 1
        freed += blob.size
    return deleted, freed


# --- Resumable uploads -------------------------------------------------------------------


# The SHA-256 of each part file, kept up to date as its chunks arrive in this process, so that
# completing an upload need not read the whole file again. Only a shortcut: it is used when the
# part file is exactly as this process left it (same size, modification time and inode);
# otherwise (chunks went to another server process, the server restarted, ...) the file is
# hashed again at completion.
_running: OrderedDict[str, tuple[int, int, int, "hashlib._Hash"]] = OrderedDict()
_running_lock = threading.Lock()
_RUNNING_MAX = 256

# Receiving a chunk overlaps its three costs: the running SHA-256 of the whole file on the
# request thread, writing the part file on a writer thread, and (for a chunk sent with
# X-Chunk-SHA256) the chunk's own digest on a third (two SHA-256 states cannot share the work).
# hashlib and os.write release the interpreter lock on large buffers, so they use separate
# cores. At most one piece per stage is in flight: memory stays a few IO_CHUNKs per request.
_chunk_hasher = ThreadPoolExecutor(2, thread_name_prefix="chunk-sha256")
_part_writer = ThreadPoolExecutor(4, thread_name_prefix="part-writer")


def _running_take(upload: Upload, start: int):
    """The running hash of the part file's first ``start`` bytes, or None (taken out: one request at a time)."""
    with _running_lock:
        entry = _running.pop(str(upload.pk), None)
    if start == 0:
        return hashlib.sha256()
    return entry[3] if entry is not None and entry[0] == start else None


def _running_put(upload: Upload, path: Path, size: int, digest) -> None:
    stat = path.stat()
    if stat.st_size != size:  # someone else wrote meanwhile: no shortcut for this upload
        return
    with _running_lock:
        _running[str(upload.pk)] = (size, stat.st_mtime_ns, stat.st_ino, digest)
        while len(_running) > _RUNNING_MAX:
            _running.popitem(last=False)


def _running_digest(upload: Upload, path: Path) -> str | None:
    with _running_lock:
        entry = _running.pop(str(upload.pk), None)
    if entry is None:
        return None
    stat = path.stat()
    if (entry[0], entry[1], entry[2]) != (stat.st_size, stat.st_mtime_ns, stat.st_ino):
        return None
    return entry[3].hexdigest()


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Append ``data`` (which lands at ``offset``) and start writing it to the disk.

    The kernel would write it back only much later; starting now (POSIX_FADV_DONTNEED starts
    writeback of the dirty range, and keeps in the cache the pages that it cannot drop while they
    are dirty or being written) spreads the disk work over the upload, so the fdatasync that
    completes it has little left to wait for.
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, len(data), os.POSIX_FADV_DONTNEED)


def receive_chunk(upload: Upload, start: int, stream: BinaryIO, length: int, chunk_sha256: str | None = None) -> int:
    """Append ``length`` bytes at ``start`` to the upload's part file. Returns the new offset.

    ``start`` must equal what is on disk: a client that lost track asks for the offset
    and resumes from there. The part file is the truth, not the row. With
    ``chunk_sha256`` the chunk is checked, and dropped if it arrived damaged.
    """
    if upload.status != UploadStatus.RECEIVING:
        raise BlobError(f"This upload is {upload.status}; start a new one.")
    path = part_path(upload)
    on_disk = path.stat().st_size if path.exists() else 0
    if start != on_disk:
        raise ChunkOffsetError(on_disk)
    if start + length > upload.size:
        raise BlobError(f"The chunk ends at byte {start + length}, past the declared size of {upload.size} bytes.")
    remaining = length
    digest = hashlib.sha256() if chunk_sha256 else None
    running = _running_take(upload, start)
    before = running.copy() if running is not None and chunk_sha256 else None
    hashing = writing = None  # the previous piece's chunk digest and write, on their threads
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while remaining:
            piece = stream.read(min(IO_CHUNK, remaining))
            if not piece:
                break  # the connection dropped mid-chunk: keep what arrived, the client resumes
            if digest is not None:
                if hashing is not None:
                    hashing.result()  # pieces enter the digest in order
                hashing = _chunk_hasher.submit(digest.update, piece)
            if writing is not None:
                writing.result()  # and the file in order
            writing = _part_writer.submit(_write_all, fd, piece, start + length - remaining)
            if running is not None:
                running.update(piece)
            remaining -= len(piece)
    finally:
        try:
            for pending in (hashing, writing):
                if pending is not None:
                    pending.result()
        finally:
            os.close(fd)
    if digest is not None and not remaining and digest.hexdigest() != chunk_sha256.lower():
        os.truncate(path, start)
        if before is not None:
            _running_put(upload, path, start, before)
        raise BlobError(f"The chunk at byte {start} arrived damaged (SHA-256 mismatch); send it again.")
    if running is not None:
        _running_put(upload, path, start + length - remaining, running)
    received = path.stat().st_size
    Upload.objects.filter(pk=upload.pk).update(received=received, updated_at=timezone.now())
    upload.received = received
    return received


class ChunkOffsetError(BlobError):
    def __init__(self, expected: int) -> None:
        super().__init__(f"Expected the chunk to start at byte {expected}; resume from there.")
        self.expected = expected


def complete_upload(upload: Upload) -> Blob:
    """Check the finished part file (size, SHA-256) and turn it into a blob."""
    if upload.status == UploadStatus.COMPLETE and upload.blob_id:
        return upload.blob
    if upload.status != UploadStatus.RECEIVING:
        raise BlobError(f"This upload is {upload.status}; start a new one.")
    path = part_path(upload)
    on_disk = path.stat().st_size if path.exists() else 0
    if on_disk != upload.size:
        raise BlobError(f"The upload is incomplete: {on_disk} of {upload.size} bytes arrived. Send the rest, then complete it.")
    sha256 = _running_digest(upload, path) or sha256_of(path)
    if upload.expected_sha256 and upload.expected_sha256.lower() != sha256:
        path.unlink(missing_ok=True)
        Upload.objects.filter(pk=upload.pk).update(status=UploadStatus.ABORTED, received=0, updated_at=timezone.now())
        raise BlobError(
            f"The file arrived corrupted: its SHA-256 is {sha256}, the client said {upload.expected_sha256}. "
            "Nothing was kept; upload it again."
        )
    # "complete" promises the bytes survive a crash: they reach the disk before the row says so.
    flush_to_disk(path)
    blob = store_path(path, sha256=sha256, move=True)
    Upload.objects.filter(pk=upload.pk).update(status=UploadStatus.COMPLETE, blob=blob, updated_at=timezone.now())
    upload.status, upload.blob = UploadStatus.COMPLETE, blob
    return blob


def abort_upload(upload: Upload) -> None:
    with _running_lock:
        _running.pop(str(upload.pk), None)
    part_path(upload).unlink(missing_ok=True)
    Upload.objects.filter(pk=upload.pk).update(status=UploadStatus.ABORTED, updated_at=timezone.now())
