"""Deterministic train/eval splits: a document's split is a hash of seed and id."""

from __future__ import annotations

from typing import Literal

import numpy as np

# --- Splits ---------------------------------------------------------------------------------

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a bijection on 64-bit integers that scatters neighbours."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def validate_split(ratio: float, seed: int) -> None:
    if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ValueError(f"The train ratio must be between 0 and 1 (exclusive), e.g. 0.9; got {ratio!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"The seed must be a whole number from 0 to 2^63 − 1; got {seed!r}.")


def _split_threshold(ratio: float) -> int:
    return min(_MASK, int(ratio * 2.0**64))


def split_of(seed: int, ratio: float, doc_id: int) -> Literal["train", "eval"]:
    """The split of document ``doc_id``: a pure function of (seed, ratio, id)."""
    return "train" if _mix((_mix(seed & _MASK) + doc_id) & _MASK) < _split_threshold(ratio) else "eval"


def split_mask(seed: int, ratio: float, count: int, start: int = 0) -> np.ndarray:
    """``split_of(...) == "train"`` for ids ``start … start+count−1``, vectorised. # (count,) bool"""
    with np.errstate(over="ignore"):
        x = np.uint64(_mix(seed & _MASK)) + np.arange(start, start + count, dtype=np.uint64)
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z < np.uint64(_split_threshold(ratio))


def split_counts(seed: int, ratio: float, count: int, chunk: int = 1 << 20) -> tuple[int, int]:
    """(train, eval) document counts of a dataset of ``count`` documents."""
    validate_split(ratio, seed)
    train = 0
    for start in range(0, count, chunk):
        train += int(split_mask(seed, ratio, min(chunk, count - start), start).sum())
    return train, count - train
