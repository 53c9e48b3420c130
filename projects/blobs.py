"""Content-addressed blob storage and resumable uploads.

Everything large goes through here: it is written by streaming (bounded memory), named
by its SHA-256, stored once through Django's storage API, and read back as a local path
for the engines (which memory-map files).
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import shutil
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

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
_running: OrderedDict[str, tuple[int, int, int, hashlib._Hash]] = OrderedDict()
_running_lock = threading.Lock()
_RUNNING_MAX = 256

# Receiving a chunk overlaps its costs: the request thread copies the body into buffers, a hasher
# thread feeds them to the running SHA-256 of the whole file, another (for a chunk sent with
# X-Chunk-SHA256) to the chunk's own digest (two SHA-256 states cannot share the work), and a
# writer thread writes them. hashlib and os.pwrite release the interpreter lock on large buffers,
# so they run on separate cores while the request thread takes in the next piece.
_hasher = ThreadPoolExecutor(4, thread_name_prefix="upload-sha256")
_part_writer = ThreadPoolExecutor(4, thread_name_prefix="part-writer")

#: O_DIRECT needs memory, file offsets and lengths aligned to the device's block size; a page
#: covers every common one (512 B and 4 KiB sectors).
DIRECT_ALIGN = mmap.PAGESIZE
#: Buffers a chunk may fill or have in flight at once (one filling, the others being written).
_BUFFERS_PER_CHUNK = 3
_buffer_pool: list[mmap.mmap] = []
_buffer_pool_lock = threading.Lock()


def _take_buffer() -> mmap.mmap:
    """A page-aligned IO_CHUNK buffer (anonymous memory map), reused across requests."""
    with _buffer_pool_lock:
        while _buffer_pool:
            buffer = _buffer_pool.pop()
            if len(buffer) == IO_CHUNK:
                return buffer
    return mmap.mmap(-1, IO_CHUNK)


def _give_back(buffer: mmap.mmap) -> None:
    with _buffer_pool_lock:
        if len(_buffer_pool) < 4 * _BUFFERS_PER_CHUNK:
            _buffer_pool.append(buffer)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _PartFile:
    """Writes a chunk into the part file at its offsets.

    Whole blocks go through O_DIRECT where the file system allows it: the bytes go from the
    request's buffer to the disk without passing through the page cache. On this project's
    machines writing the page cache was the most expensive step of an upload (bench/upload.py:
    2 GiB buffered took 3-5 CPU-seconds, O_DIRECT 0.2), and an upload's bytes are not read
    again soon (the inspection job reads them once, later). A chunk's last partial block is
    written through the page cache; the next chunk reads it back and rewrites it whole.
    Without O_DIRECT (``UPLOAD_DIRECT_IO`` off, tmpfs and other file systems that refuse it),
    everything goes through the page cache and its writeback is started at once, so the
    fdatasync that completes the upload has little left to wait for.
    """

    def __init__(self, path: Path, direct: bool) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._direct_opened: int | None = None  # closed in close(), once no write can be using it
        if direct and hasattr(os, "O_DIRECT"):
            try:
                self._direct_opened = os.open(path, os.O_WRONLY | os.O_DIRECT)
            except OSError:
                pass
        self.direct_fd = self._direct_opened  # None once the file system refused a direct write

    @property
    def direct(self) -> bool:
        return self.direct_fd is not None

    def read_head(self, view: memoryview, offset: int) -> None:
        """Read back ``len(view)`` bytes the previous chunk left in a partial block."""
        count = 0
        while count < len(view):
            got = os.preadv(self.fd, [view[count:]], offset + count)
            if not got:
                raise BlobError(
                    "The upload's part file is shorter than its offset; resume from the offset the server gives."
                )
            count += got

    def write(self, view: memoryview, offset: int) -> None:
        """Write ``view`` at ``offset`` (on a writer thread)."""
        direct_fd = self.direct_fd
        if direct_fd is not None and offset % DIRECT_ALIGN == 0:
            whole = len(view) - len(view) % DIRECT_ALIGN
            if whole:
                try:
                    _pwrite_all(direct_fd, view[:whole], offset)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    # The file system opened the file for O_DIRECT but wants other alignment: go
                    # buffered. The descriptor stays open until close(): writes of this chunk's
                    # other buffers, on other writer threads, may still be using it.
                    self.direct_fd = None
                    whole = 0
                view, offset = view[whole:], offset + whole
        if view:
            _pwrite_all(self.fd, view, offset)
            if self.direct_fd is None and hasattr(os, "posix_fadvise"):
                # Start writing it back now (POSIX_FADV_DONTNEED starts writeback of the dirty
                # range; pages still dirty or being written stay cached).
                os.posix_fadvise(self.fd, offset, len(view), os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        for fd in (self.fd, self._direct_opened):
            if fd is not None:
                os.close(fd)


def _read_into(stream: BinaryIO, view: memoryview) -> int:
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto(view) or 0
    data = stream.read(len(view))
    view[: len(data)] = data
    return len(data)


# Uploads with a request working on their part file in this process (the web server is one
# process): a second chunk, a completion or an abort arriving meanwhile is refused rather than
# writing over or removing the bytes the first is writing.
_busy: set[str] = set()


class UploadBusyError(BlobError):
    def __init__(self) -> None:
        super().__init__(
            "Another request is writing this upload right now (a chunk still arriving, perhaps from "
            "another tab or script). Wait for it, then ask the upload for its offset and resume from there."
        )


@contextmanager
def _exclusive(upload: Upload):
    key = str(upload.pk)
    with _running_lock:
        if key in _busy:
            raise UploadBusyError()
        _busy.add(key)
    try:
        yield
    finally:
        with _running_lock:
            _busy.discard(key)


def _running_take(upload: Upload, start: int):
    """The running hash of the part file's first ``start`` bytes, or None (taken out: one request at a time)."""
    with _running_lock:
        entry = _running.pop(str(upload.pk), None)
    if start == 0:
        return hashlib.sha256()
    return entry[3] if entry is not None and entry[0] == start else None


def _running_put(upload: Upload, path: Path, size: int, digest: object) -> None:
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


def receive_chunk(upload: Upload, start: int, stream: BinaryIO, length: int, chunk_sha256: str | None = None) -> int:
    with _exclusive(upload):
        return _receive_chunk(upload, start, stream, length, chunk_sha256)


def _receive_chunk(upload: Upload, start: int, stream: BinaryIO, length: int, chunk_sha256: str | None) -> int:
    """Append ``length`` bytes at ``start`` to the upload's part file. Returns the new offset.

    ``start`` must equal what is on disk: a client that lost track asks for the offset
    and resumes from there. The part file is the truth, not the row. With
    ``chunk_sha256`` the chunk is checked, and dropped if it arrived damaged. A body that
    ends early (a dropped connection) keeps what arrived; a chunk the disk refused keeps nothing.

    The body is read into page-aligned buffers (``IO_CHUNK`` bytes): the request thread hashes
    each piece as it arrives while a writer thread writes the buffer filled before it.
    """
    if upload.status != UploadStatus.RECEIVING:
        raise BlobError(f"This upload is {upload.status}; start a new one.")
    path = part_path(upload)
    on_disk = path.stat().st_size if path.exists() else 0
    if start != on_disk:
        raise ChunkOffsetError(on_disk)
    if start + length > upload.size:
        raise BlobError(f"The chunk ends at byte {start + length}, past the declared size of {upload.size} bytes.")
    digest = hashlib.sha256() if chunk_sha256 else None
    running = _running_take(upload, start)
    before = running.copy() if running is not None and chunk_sha256 else None
    part = _PartFile(path, direct=settings.UPLOAD_DIRECT_IO and IO_CHUNK >= 2 * DIRECT_ALIGN)
    remaining = length
    # Each digest's last piece, on a hasher thread: a digest takes its pieces in order, so the next
    # one is handed over once the one before is in.
    hashing: dict = {}
    writes: deque = deque()  # (buffer, future) written or being written, oldest first
    buffer = _take_buffer()
    view = memoryview(buffer)
    # With O_DIRECT the buffer starts on a block boundary: the previous chunk's partial block first.
    fill = start % DIRECT_ALIGN if part.direct else 0
    offset = start - fill  # where the buffer's first byte goes in the file
    failed: OSError | None = None
    try:
        if fill:
            part.read_head(view[:fill], offset)
        while remaining:
            try:
                got = _read_into(stream, view[fill : min(IO_CHUNK, fill + remaining)])
            except OSError:  # Django's UnreadablePostError and the like: the client went away
                got = 0
            if not got:
                break  # the connection dropped mid-chunk: keep what arrived, the client resumes
            piece = view[fill : fill + got]
            for state in (running, digest):
                if state is not None:
                    if state in hashing:
                        hashing[state].result()
                    hashing[state] = _hasher.submit(state.update, piece)
            fill += got
            remaining -= got
            if fill == IO_CHUNK:
                writes.append((buffer, _part_writer.submit(part.write, view, offset)))
                offset += fill
                fill = 0
                if len(writes) >= _BUFFERS_PER_CHUNK:  # wait for the oldest write, reuse its buffer
                    buffer, future = writes.popleft()
                    future.result()
                else:
                    buffer = _take_buffer()
                view = memoryview(buffer)
        if fill:
            writes.append((buffer, _part_writer.submit(part.write, view[:fill], offset)))
        else:
            _give_back(buffer)
        buffer = None
    except OSError as exc:
        failed = exc
    finally:
        for future in hashing.values():
            future.result()
        for pending_buffer, future in writes:
            try:
                future.result()
            except OSError as exc:
                failed = failed or exc
            _give_back(pending_buffer)
        if buffer is not None:  # left early (an exception): the buffer being filled
            _give_back(buffer)
        part.close()
    if failed is not None:  # the disk refused (full, read-only, ...): nothing of this chunk is kept
        os.truncate(path, start)
        if before is not None:
            _running_put(upload, path, start, before)
        raise BlobError(
            f"The server could not store the chunk at byte {start} ({failed.strerror or failed}); "
            "nothing of it was kept. Try again, or tell the administrator if it persists."
        )
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
    with _exclusive(upload):
        return _complete_upload(upload)


def _complete_upload(upload: Upload) -> Blob:
    if upload.status != UploadStatus.RECEIVING:
        raise BlobError(f"This upload is {upload.status}; start a new one.")
    path = part_path(upload)
    on_disk = path.stat().st_size if path.exists() else 0
    if on_disk != upload.size:
        raise BlobError(
            f"The upload is incomplete: {on_disk} of {upload.size} bytes arrived. Send the rest, then complete it."
        )
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
    with _exclusive(upload):
        _abort_upload(upload)


def _abort_upload(upload: Upload) -> None:
    with _running_lock:
        _running.pop(str(upload.pk), None)
    part_path(upload).unlink(missing_ok=True)
    Upload.objects.filter(pk=upload.pk).update(status=UploadStatus.ABORTED, updated_at=timezone.now())
