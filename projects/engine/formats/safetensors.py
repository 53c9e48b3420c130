"""safetensors files: the header read and checked, tensor entries in PyTorch order.

The checks come in two layers. First the ones this module writes itself, because each gives a person a message
they can act on (the header length against the file and the format's 100 MB bound before anything is allocated,
a pickle in disguise, duplicate keys, unknown dtypes, offsets that overlap, leave gaps or run past the end).
Then the file must open with the ``safetensors`` package's own reader (``safe_open``, which memory-maps it and
validates the header the way loading will): whatever that refuses is refused too, with its reason, and the keys,
shapes and dtypes it reads must be the ones parsed here.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from projects.engine.tensor_names import classify_tensor

from .errors import ModelFormatError
from .limits import GGUF_MAGIC, SAFETENSORS_DTYPE_BITS, SAFETENSORS_MAX_HEADER
from .records import TensorEntry
from .sniff import _refuse_pickled_content

# --------------------------------------------------------------------------------------------
# safetensors


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        duplicate = next(k for k, c in Counter(keys).items() if c > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def _read_safetensors_header(path: Path, label: str) -> tuple[dict[str, str], list[TensorEntry]]:
    """Parse and validate one safetensors file's header: (``__metadata__``, records in file order).

    Layout: 8-byte little-endian header length N, N bytes of JSON, then the data section; each
    tensor's ``data_offsets`` are relative to the data section. Checked as the safetensors library
    checks on load: every dtype known, each byte range matching shape × dtype, ranges back to back
    from 0 with no gap or overlap and ending exactly at the end of the file.
    """
    size = path.stat().st_size
    if size == 0:
        raise ModelFormatError(label, "the file is empty (0 bytes): the upload probably failed; upload it again")
    with path.open("rb") as handle:
        head = handle.read(16)
        handle.seek(8)
        _refuse_pickled_content(label, head, size, ".safetensors")
        if len(head) < 8:
            raise ModelFormatError(
                label,
                f"the file is only {size} bytes, too short for a safetensors header: it is truncated; upload it again",
            )
        (header_len,) = struct.unpack_from("<Q", head)
        if header_len > size - 8:
            hint = (
                "the content is GGUF: name it .gguf and upload it on its own"
                if head[:4] == GGUF_MAGIC
                else "upload the complete file again, as written by save_pretrained(..., safe_serialization=True)"
            )
            raise ModelFormatError(
                label,
                f"not a valid safetensors file: the header length field says {header_len} bytes but the file is only "
                f"{size} bytes, so it is truncated or not safetensors; {hint}",
            )
        if header_len > SAFETENSORS_MAX_HEADER:
            raise ModelFormatError(
                label,
                f"the safetensors header is {header_len} bytes, above the format's 100 MB limit: the file is corrupt",
            )
        raw_header = handle.read(header_len)
    try:
        header = json.loads(raw_header.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(
            label, f"the safetensors header is not valid JSON ({exc}): the file is corrupt or not safetensors"
        ) from None
    if not isinstance(header, dict):
        raise ModelFormatError(label, "the safetensors header is not a JSON object: the file is corrupt")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise ModelFormatError(label, "the safetensors __metadata__ is not an object: the file is corrupt")
    data_start = 8 + header_len
    data_len = size - data_start
    records: list[TensorEntry] = []
    for name, entry in header.items():
        dtype, shape, offsets = (
            (entry.get(k) for k in ("dtype", "shape", "data_offsets")) if isinstance(entry, dict) else (None,) * 3
        )
        if not (
            isinstance(dtype, str)
            and isinstance(shape, list)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in [*shape, *offsets])
        ):
            raise ModelFormatError(
                label,
                f"tensor {name!r} needs dtype, shape and data_offsets [begin, end] of non-negative integers, got "
                f"{entry!r}: the file is corrupt",
            )
        bits = SAFETENSORS_DTYPE_BITS.get(dtype)
        if bits is None:
            raise ModelFormatError(
                label,
                f"tensor {name!r} has unknown dtype {dtype!r} (known: {', '.join(SAFETENSORS_DTYPE_BITS)}): the file "
                "is corrupt or from a newer safetensors",
            )
        begin, end = offsets
        n_params = math.prod(shape)
        if end < begin:
            raise ModelFormatError(
                label, f"tensor {name!r} data_offsets [{begin}, {end}] end before they begin: the file is corrupt"
            )
        if end > data_len:
            raise ModelFormatError(
                label,
                f"tensor {name!r} data_offsets [{begin}, {end}] point past the end of the data section ({data_len} "
                "bytes; "
                f"file {size} bytes): the file is truncated or its header is corrupt; upload it again",
            )
        if n_params * bits % 8 or n_params * bits // 8 != end - begin:
            raise ModelFormatError(
                label,
                f"tensor {name!r} has shape {shape} of {dtype} ({n_params} elements × {bits} bits = "
                f"{n_params * bits / 8:g} bytes) but its data_offsets [{begin}, {end}] span {end - begin} bytes: "
                "the file is corrupt",
            )
        layer, component = classify_tensor(name)
        records.append(
            TensorEntry(
                name=name,
                file=path.name,
                layer=layer,
                component=component,
                shape=tuple(shape),
                dtype=dtype,
                n_params=n_params,
                offset=data_start + begin,
                n_bytes=end - begin,
            )
        )

    # Back to back from 0 to the end, as the safetensors library insists when loading.
    cursor, previous = data_start, None
    for record in sorted(records, key=lambda r: (r.offset, r.n_bytes)):
        if record.offset < cursor:
            raise ModelFormatError(
                label, f"tensors {previous!r} and {record.name!r} overlap in the data section: the file is corrupt"
            )
        if record.offset > cursor:
            raise ModelFormatError(
                label,
                f"there are {record.offset - cursor} unused bytes before tensor {record.name!r} (at byte {cursor}): "
                "safetensors stores tensors back to back and the safetensors library refuses such files; re-save the "
                "model",
            )
        cursor, previous = record.offset + record.n_bytes, record.name
    if cursor != size:
        raise ModelFormatError(
            label,
            f"the file has {size - cursor} bytes after the last tensor: safetensors files end with their last "
            "tensor and the safetensors library refuses this one; re-save the model",
        )
    _check_with_library(path, label, records)
    return {str(k): v for k, v in metadata.items()}, sorted(records, key=lambda r: r.offset)


def _check_with_library(path: Path, label: str, records: list[TensorEntry]) -> None:
    """The safetensors package must open the file and see the same tensors (names, shapes, dtypes)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            seen = {name: handle.get_slice(name) for name in handle.keys()}
            theirs = {name: (tuple(s.get_shape()), s.get_dtype()) for name, s in seen.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(label, f"the safetensors library refuses the file ({exc}): re-save the model") from exc
    ours = {r.name: (r.shape, r.dtype) for r in records}
    if theirs != ours:
        differ = sorted(set(theirs.items()) ^ set(ours.items()))[:3]
        raise ModelFormatError(label, f"the safetensors library reads other tensors than the header says ({differ})")
