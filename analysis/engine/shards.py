"""Activation shards on disk: a streamed, resumable safetensors writer, a streaming reader, disk estimates.

A capture directory holds::

    capture.json              what is being captured (written first; a resume must ask for the same)
    shard-00000.safetensors   tokens [0, T), T = tokens_per_shard
    shard-00001.safetensors   tokens [T, 2T) ...
    manifest.json             written last: the capture is complete only once it exists

Each shard holds, for every captured layer ``i``, ``L{i}.in`` (the MLP input: the output of the
post-attention norm) and ``L{i}.out`` (the MLP output), both ``(n_tokens, d_model)`` in float16 or
bfloat16, plus ``token_ids`` (int32), ``doc_ids`` (int64) and ``positions`` (int32, the position in
the sequence the model saw). A shard is written under a temporary name, flushed to disk and renamed,
so a shard file that exists is complete; a killed capture leaves at most a ``.partial`` file, which
the next writer deletes before continuing after the last complete shard.

Memory stays flat: the writer holds one shard's worth of buffers, the reader one shard's slice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import save_file

SHARD_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16}
"""Element types activations may be stored in."""

FORMAT = "hartonomous-mlp-activations"
FORMAT_VERSION = 1
SPEC_NAME = "capture.json"
MANIFEST_NAME = "manifest.json"
PARTIAL_SUFFIX = ".partial"
_META_KEY = "hartonomous.shard"  # a single metadata key: safetensors writes several in no fixed order

# Bytes per token besides the activations: token_ids int32 + doc_ids int64 + positions int32.
_TOKEN_FIELDS_BYTES = 4 + 8 + 4
# A shard's header (JSON with offsets, shapes and our metadata) is well under this per tensor.
_HEADER_BYTES_PER_TENSOR = 160


class ShardError(ValueError):
    """A capture directory that cannot be written or read as asked (mismatched resume, incomplete capture...)."""


class InsufficientDiskError(OSError):
    """A capture (or another large write) that would not fit the free disk."""


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard-{index:05d}.safetensors"


def estimate_capture_bytes(
    n_tokens: int, n_layers: int, d_model: int, dtype: str = "float16", tokens_per_shard: int | None = None
) -> int:
    """Bytes a capture of ``n_tokens`` over ``n_layers`` MLPs (input and output, ``d_model`` wide) takes on disk.

    Exact for the tensor data; headers are estimated (a few hundred bytes per tensor and shard).
    """
    if dtype not in SHARD_DTYPES:
        raise ShardError(f"dtype {dtype!r} is not a shard dtype; use one of {sorted(SHARD_DTYPES)}")
    if n_tokens < 0 or n_layers < 0 or d_model < 0:
        raise ShardError("token, layer and width counts must be non-negative")
    itemsize = torch.empty((), dtype=SHARD_DTYPES[dtype]).element_size()
    per_token = n_layers * 2 * d_model * itemsize + _TOKEN_FIELDS_BYTES
    n_shards = 1 if not tokens_per_shard else max(1, -(-n_tokens // tokens_per_shard))
    headers = n_shards * (2 * n_layers + 3) * _HEADER_BYTES_PER_TENSOR
    return n_tokens * per_token + headers + 4096  # + capture.json and manifest.json


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def format_bytes(n: float) -> str:
    """``1.5 GB``-style size (decimal units, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def require_free_disk(path: str | Path, needed_bytes: int, reserve_bytes: int = 0) -> int:
    """Raise :class:`InsufficientDiskError` unless ``needed_bytes`` (+ ``reserve_bytes``) fit the disk of ``path``.

    ``path`` need not exist yet (its nearest existing parent is measured). Returns the free bytes.
    """
    where = _existing_parent(Path(path))
    free = shutil.disk_usage(where).free
    if needed_bytes + reserve_bytes > free:
        raise InsufficientDiskError(
            f"the capture needs about {format_bytes(needed_bytes)} but only {format_bytes(free)} is free on the "
            f"disk holding {where}"
            + (f" (keeping {format_bytes(reserve_bytes)} in reserve)" if reserve_bytes else "")
            + "; capture fewer tokens or fewer layers, or free disk space"
        )
    return free


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_shard_meta(path: Path) -> dict[str, Any]:
    """The metadata the writer put in shard ``path`` (index, first_token, n_tokens, layers, dtype)."""
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if _META_KEY not in meta:
        raise ShardError(f"{path} is not an activation shard written by this engine")
    return json.loads(meta[_META_KEY])


class ShardWriter:
    """Buffers activations and writes one shard every ``tokens_per_shard`` tokens; resumes an interrupted capture.

    ``spec`` describes what is captured (model, dataset, settings); it is stored as ``capture.json`` and a
    writer opened on a directory that already holds a different spec refuses (:class:`ShardError`) rather
    than mixing two captures. On opening, leftover ``.partial`` files are deleted and complete shards are
    counted: :attr:`tokens_written` is where the capture continues.
    """

    def __init__(
        self,
        directory: str | Path,
        layers: Sequence[int],
        d_model: int,
        dtype: str = "float16",
        tokens_per_shard: int = 8192,
        spec: Mapping[str, Any] | None = None,
    ) -> None:
        if dtype not in SHARD_DTYPES:
            raise ShardError(f"dtype {dtype!r} is not a shard dtype; use one of {sorted(SHARD_DTYPES)}")
        if tokens_per_shard < 1:
            raise ShardError("tokens_per_shard must be at least 1")
        if not layers:
            raise ShardError("no layers to capture")
        self.directory = Path(directory)
        self.layers = sorted(set(int(layer) for layer in layers))
        self.d_model = int(d_model)
        self.dtype = dtype
        self.tokens_per_shard = int(tokens_per_shard)
        self.spec = {
            **dict(spec or {}),
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "layers": self.layers,
            "d_model": self.d_model,
            "dtype": dtype,
            "tokens_per_shard": self.tokens_per_shard,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        self._check_spec()
        for leftover in self.directory.glob("*" + PARTIAL_SUFFIX):
            leftover.unlink()
        self._short_tail = False
        self.completed_shards = self._count_complete()
        self.tokens_written = 0
        if self.completed_shards:
            last = read_shard_meta(self.directory / shard_name(self.completed_shards - 1))
            self.tokens_written = int(last["first_token"]) + int(last["n_tokens"])
        self.resumed_tokens = self.tokens_written
        torch_dtype = SHARD_DTYPES[dtype]
        n = self.tokens_per_shard
        self._in = {layer: torch.empty(n, self.d_model, dtype=torch_dtype) for layer in self.layers}
        self._out = {layer: torch.empty(n, self.d_model, dtype=torch_dtype) for layer in self.layers}
        self._token_ids = torch.empty(n, dtype=torch.int32)
        self._doc_ids = torch.empty(n, dtype=torch.int64)
        self._positions = torch.empty(n, dtype=torch.int32)
        self._filled = 0

    @property
    def tokens_added(self) -> int:
        """Tokens in complete shards plus those buffered for the next one."""
        return self.tokens_written + self._filled

    @property
    def complete(self) -> bool:
        """Whether ``manifest.json`` exists (the capture finished)."""
        return (self.directory / MANIFEST_NAME).exists()

    def _check_spec(self) -> None:
        spec_path = self.directory / SPEC_NAME
        wanted = json.loads(json.dumps(self.spec, sort_keys=True))
        if spec_path.exists():
            existing = json.loads(spec_path.read_text(encoding="utf-8"))
            if existing != wanted:
                changed = sorted(k for k in set(existing) | set(wanted) if existing.get(k) != wanted.get(k))
                raise ShardError(
                    f"{self.directory} holds a capture with different settings ({', '.join(changed)}); "
                    "resume it with the same settings or capture into a new directory"
                )
        else:
            if any(self.directory.glob("shard-*.safetensors")):
                raise ShardError(f"{self.directory} holds shards but no {SPEC_NAME}; capture into a new directory")
            write_json_atomic(spec_path, wanted)

    def _count_complete(self) -> int:
        index = 0
        while (self.directory / shard_name(index)).exists():
            index += 1
        # A rename makes shards appear in order; a gap means files were removed by hand.
        stray = [p.name for p in self.directory.glob("shard-*.safetensors") if int(p.stem.split("-")[1]) >= index]
        if stray:
            raise ShardError(f"{self.directory} has shards after a missing one ({', '.join(sorted(stray))})")
        if index and self.complete:
            return index
        if index:
            last = read_shard_meta(self.directory / shard_name(index - 1))
            if last["n_tokens"] != self.tokens_per_shard:
                # A short shard is the last one of a capture killed while writing its manifest: keep it and
                # let the capture find the stream exhausted; but it cannot be continued past.
                self._short_tail = True
        return index

    def add(
        self,
        activations: Mapping[int, tuple[torch.Tensor, torch.Tensor]],
        token_ids: torch.Tensor,
        doc_ids: torch.Tensor,
        positions: torch.Tensor,
    ) -> int:
        """Append tokens: ``activations[layer] = (mlp_in, mlp_out)``, each ``(n, d_model)``; returns shards written."""
        if self._short_tail and token_ids.shape[0]:
            raise ShardError(
                f"{self.directory} ends with a short shard, so its stream had already ended; "
                "the capture cannot be continued with more tokens"
            )
        n = int(token_ids.shape[0])
        if set(activations) != set(self.layers):
            raise ShardError(f"activations for layers {sorted(activations)} given, expected {self.layers}")
        written = 0
        start = 0
        while start < n:
            take = min(n - start, self.tokens_per_shard - self._filled)
            dst = slice(self._filled, self._filled + take)
            src = slice(start, start + take)
            for layer in self.layers:
                x_in, x_out = activations[layer]
                self._in[layer][dst] = x_in[src]
                self._out[layer][dst] = x_out[src]
            self._token_ids[dst] = token_ids[src]
            self._doc_ids[dst] = doc_ids[src]
            self._positions[dst] = positions[src]
            self._filled += take
            start += take
            if self._filled == self.tokens_per_shard:
                self._flush()
                written += 1
        return written

    def _flush(self) -> None:
        n = self._filled
        if n == 0:
            return
        index = self.completed_shards
        tensors: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            tensors[f"L{layer}.in"] = self._in[layer][:n].contiguous()
            tensors[f"L{layer}.out"] = self._out[layer][:n].contiguous()
        tensors["token_ids"] = self._token_ids[:n].contiguous()
        tensors["doc_ids"] = self._doc_ids[:n].contiguous()
        tensors["positions"] = self._positions[:n].contiguous()
        meta = {
            "index": index,
            "first_token": self.tokens_written,
            "n_tokens": n,
            "layers": self.layers,
            "d_model": self.d_model,
            "dtype": self.dtype,
        }
        final = self.directory / shard_name(index)
        tmp = final.with_name(final.name + PARTIAL_SUFFIX)
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        self.completed_shards += 1
        self.tokens_written += n
        self._filled = 0

    def close(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the last (short) shard and then ``manifest.json``; returns the manifest."""
        self._flush()
        if self.tokens_written == 0:
            raise ShardError("no tokens were captured")
        shards = []
        for index in range(self.completed_shards):
            path = self.directory / shard_name(index)
            meta = read_shard_meta(path)
            shards.append(
                {
                    "file": path.name,
                    "index": index,
                    "first_token": meta["first_token"],
                    "n_tokens": meta["n_tokens"],
                    "bytes": path.stat().st_size,
                    "sha256": sha256_file(path),
                }
            )
        manifest = {
            **dict(extra or {}),
            "spec": json.loads((self.directory / SPEC_NAME).read_text(encoding="utf-8")),
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "complete": True,
            "layers": self.layers,
            "d_model": self.d_model,
            "dtype": self.dtype,
            "tokens_per_shard": self.tokens_per_shard,
            "n_tokens": sum(s["n_tokens"] for s in shards),
            "n_shards": len(shards),
            "bytes": sum(s["bytes"] for s in shards),
            "shards": shards,
        }
        write_json_atomic(self.directory / MANIFEST_NAME, manifest)
        return manifest


class ActivationBatch(NamedTuple):
    """A batch of captured tokens for one layer (tensors on CPU)."""

    inputs: torch.Tensor
    """(B, d_model) MLP inputs, in the dtype asked for."""
    outputs: torch.Tensor
    """(B, d_model) MLP outputs."""
    token_ids: torch.Tensor
    """(B,) int32 token ids."""
    doc_ids: torch.Tensor
    """(B,) int64 document ids."""
    positions: torch.Tensor
    """(B,) int32 positions in the sequence the model saw."""
    token_index: torch.Tensor
    """(B,) int64 global token index in the capture (order of capture)."""


class _Shard(NamedTuple):
    path: Path
    first: int
    n: int


class CaptureReader:
    """Reads a capture directory shard by shard: never more than one shard's slice in memory.

    ``require_complete`` (default) refuses a directory without ``manifest.json``; with False, the
    complete shards of an unfinished capture are read (e.g. to look at a capture still running).
    """

    def __init__(self, directory: str | Path, require_complete: bool = True) -> None:
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST_NAME
        if manifest_path.exists():
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
            entries = [(self.directory / s["file"], s["first_token"], s["n_tokens"]) for s in self.manifest["shards"]]
        elif require_complete:
            raise ShardError(
                f"{self.directory} is not a complete capture (no {MANIFEST_NAME}); resume the capture to finish it"
            )
        else:
            spec_path = self.directory / SPEC_NAME
            if not spec_path.exists():
                raise ShardError(f"{self.directory} is not a capture directory (no {SPEC_NAME})")
            self.manifest = {**json.loads(spec_path.read_text(encoding="utf-8")), "complete": False}
            entries = []
            index = 0
            while (path := self.directory / shard_name(index)).exists():
                meta = read_shard_meta(path)
                entries.append((path, meta["first_token"], meta["n_tokens"]))
                index += 1
        self.shards = [_Shard(Path(p), int(first), int(n)) for p, first, n in entries]
        self.layers: list[int] = list(self.manifest["layers"])
        self.d_model: int = int(self.manifest["d_model"])
        self.dtype: str = self.manifest["dtype"]
        self.n_tokens: int = sum(s.n for s in self.shards)

    def require_layer(self, layer: int) -> None:
        """Raise :class:`ShardError` unless ``layer`` was captured."""
        if layer not in self.layers:
            raise ShardError(f"layer {layer} was not captured in {self.directory}; captured layers: {self.layers}")

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.n_tokens if stop is None else min(stop, self.n_tokens)
        if not 0 <= start <= stop:
            raise ShardError(f"token range [{start}, {stop}) is outside the capture's {self.n_tokens} tokens")
        return start, stop

    def _pieces(
        self, layers: Sequence[int], start: int, stop: int, shuffle: bool, seed: int, chunk: int
    ) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(seed)
        order = list(range(len(self.shards)))
        if shuffle:
            order = torch.randperm(len(order), generator=generator).tolist()
        keys = [f"L{layer}.{side}" for layer in layers for side in ("in", "out")]
        keys += ["token_ids", "doc_ids", "positions"]
        for i in order:
            shard = self.shards[i]
            lo, hi = max(start, shard.first), min(stop, shard.first + shard.n)
            if lo >= hi:
                continue
            with safe_open(str(shard.path), framework="pt") as handle:
                # Shuffling needs the whole slice of this shard; in order, a chunk at a time suffices.
                step = hi - lo if shuffle else chunk
                for a in range(lo, hi, step):
                    b = min(hi, a + step)
                    piece = {k: handle.get_slice(k)[a - shard.first : b - shard.first] for k in keys}
                    piece["token_index"] = torch.arange(a, b, dtype=torch.int64)
                    if shuffle:
                        perm = torch.randperm(b - a, generator=generator)
                        piece = {k: v[perm] for k, v in piece.items()}
                    yield piece

    def iter_multi_batches(
        self,
        layers: Sequence[int],
        batch_size: int,
        *,
        start: int = 0,
        stop: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        drop_last: bool = False,
    ) -> Iterator[dict[int, ActivationBatch]]:
        """Like :meth:`iter_batches` for several layers at once: ``{layer: batch}``, the same tokens in each.

        One pass over the shards serves every layer (training several layers in one pass).
        """
        layers = list(layers)
        for layer in layers:
            self.require_layer(layer)
        if batch_size < 1:
            raise ShardError("batch_size must be at least 1")
        start, stop = self._range(start, stop)
        pending: list[dict[str, torch.Tensor]] = []
        pending_n = 0
        for piece in self._pieces(layers, start, stop, shuffle, seed, chunk=batch_size):
            pending.append(piece)
            pending_n += int(piece["token_ids"].shape[0])
            while pending_n >= batch_size:
                merged = {k: torch.cat([p[k] for p in pending]) for k in pending[0]}
                batch = {k: v[:batch_size] for k, v in merged.items()}
                rest = {k: v[batch_size:] for k, v in merged.items()}
                pending_n -= batch_size
                pending = [rest] if pending_n else []
                yield {layer: self._batch(layer, batch, dtype) for layer in layers}
        if pending_n and not drop_last:
            merged = {k: torch.cat([p[k] for p in pending]) for k in pending[0]}
            yield {layer: self._batch(layer, merged, dtype) for layer in layers}

    def iter_batches(
        self,
        layer: int,
        batch_size: int,
        *,
        start: int = 0,
        stop: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        drop_last: bool = False,
    ) -> Iterator[ActivationBatch]:
        """Batches of ``(inputs, outputs, ...)`` for ``layer`` over tokens ``[start, stop)``.

        With ``shuffle``, shard order and the rows within each shard are permuted (seeded, so two runs with
        the same seed see the same batches); otherwise tokens come in capture order.
        """
        for batches in self.iter_multi_batches(
            [layer], batch_size, start=start, stop=stop, shuffle=shuffle, seed=seed, dtype=dtype, drop_last=drop_last
        ):
            yield batches[layer]

    @staticmethod
    def _batch(layer: int, piece: dict[str, torch.Tensor], dtype: torch.dtype) -> ActivationBatch:
        return ActivationBatch(
            inputs=piece[f"L{layer}.in"].to(dtype),
            outputs=piece[f"L{layer}.out"].to(dtype),
            token_ids=piece["token_ids"],
            doc_ids=piece["doc_ids"],
            positions=piece["positions"],
            token_index=piece["token_index"],
        )

    def read_tokens(self, start: int = 0, stop: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(token_ids, doc_ids, positions)`` of tokens ``[start, stop)`` (small: 16 bytes a token)."""
        start, stop = self._range(start, stop)
        parts = list(self._pieces([], start, stop, shuffle=False, seed=0, chunk=max(1, stop - start)))
        if not parts:
            empty = torch.empty(0, dtype=torch.int64)
            return empty.to(torch.int32), empty, empty.to(torch.int32)
        return tuple(torch.cat([p[k] for p in parts]) for k in ("token_ids", "doc_ids", "positions"))  # type: ignore[return-value]

    def read_activations(
        self, layer: int, start: int, stop: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, outputs)`` of ``layer`` for tokens ``[start, stop)`` (for small windows)."""
        self.require_layer(layer)
        start, stop = self._range(start, stop)
        parts = list(self._pieces([layer], start, stop, shuffle=False, seed=0, chunk=max(1, stop - start)))
        if not parts:
            empty = torch.empty(0, self.d_model, dtype=dtype)
            return empty, empty
        return (
            torch.cat([p[f"L{layer}.in"] for p in parts]).to(dtype),
            torch.cat([p[f"L{layer}.out"] for p in parts]).to(dtype),
        )

    def sequences(self, start: int = 0, stop: int | None = None) -> list[list[int]]:
        """Token-id sequences as the model saw them, for tokens ``[start, stop)`` (a new one where position resets).

        A sequence cut by ``stop`` is kept as its prefix (a causal model computes a prefix the same way); one cut
        by ``start`` (not starting at position 0) is dropped. Metrics use these to rerun the teacher on held-out text.
        """
        token_ids, doc_ids, positions = self.read_tokens(start, stop)
        sequences: list[list[int]] = []
        starts: list[int] = []
        prev_doc, prev_pos = None, None
        for tok, doc, pos in zip(token_ids.tolist(), doc_ids.tolist(), positions.tolist(), strict=True):
            if prev_doc != doc or prev_pos is None or pos != prev_pos + 1:
                sequences.append([])
                starts.append(pos)
            sequences[-1].append(tok)
            prev_doc, prev_pos = doc, pos
        return [seq for seq, first in zip(sequences, starts, strict=True) if first == 0]
