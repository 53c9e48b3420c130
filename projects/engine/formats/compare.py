"""What two hashed inventories share, tensor by tensor."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from projects.engine.tensor_names import COMPONENTS

from .records import ModelInfo, TensorEntry

# --------------------------------------------------------------------------------------------
# Comparison


@dataclass(frozen=True)
class ModelComparison:
    """What two inventories share, tensor by tensor (by content hash) and layer by layer.

    Hashes compare stored bytes: the same weights in another dtype or quantisation — or a GGUF
    against its source safetensors, since the converter permutes Q/K rows — do not match.
    """

    params_a: int
    """Parameter count of model A."""
    params_b: int
    """Parameter count of model B."""
    bytes_a: int
    """Tensor bytes of model A."""
    bytes_b: int
    """Tensor bytes of model B."""
    param_ratio: float | None
    """params_a / params_b (compression ratio when A is the teacher); None when B has no parameters."""
    byte_ratio: float | None
    """bytes_a / bytes_b; None when B has no bytes."""
    shared_tensors: int
    """Tensors of A whose exact bytes also occur in B (each B tensor matched at most once)."""
    shared_params: int
    """Parameters in those shared tensors (counted on A's side)."""
    shared_bytes: int
    """Bytes in those shared tensors."""
    layers_a: int
    """Number of transformer blocks in A."""
    layers_b: int
    """Number of transformer blocks in B."""
    shared_layer_pairs: tuple[tuple[int, int], ...]
    """(layer of A, layer of B) whose tensors match one for one by component and hash, sorted."""
    components: dict[str, dict[str, int]]
    """Per component: parameters in A (``a``), in B (``b``) and ``difference`` = a - b."""

    def __post_init__(self) -> None:
        if self.shared_tensors < 0 or self.shared_params > self.params_a or self.shared_bytes > self.bytes_a:
            raise ValueError("shared totals cannot exceed model A's totals")

    @property
    def shared_layers(self) -> int:
        """Layers of A that have an identical counterpart in B."""
        return len({a for a, _ in self.shared_layer_pairs})

    def as_dict(self) -> dict[str, Any]:
        return {
            "params_a": self.params_a,
            "params_b": self.params_b,
            "bytes_a": self.bytes_a,
            "bytes_b": self.bytes_b,
            "param_ratio": self.param_ratio,
            "byte_ratio": self.byte_ratio,
            "shared_tensors": self.shared_tensors,
            "shared_params": self.shared_params,
            "shared_bytes": self.shared_bytes,
            "layers_a": self.layers_a,
            "layers_b": self.layers_b,
            "shared_layers": self.shared_layers,
            "shared_layer_pairs": [list(pair) for pair in self.shared_layer_pairs],
            "components": {k: dict(v) for k, v in self.components.items()},
        }


def compare_models(a: ModelInfo, b: ModelInfo) -> ModelComparison:
    """Compare two hashed inventories (e.g. a teacher and a student built from it)."""
    for side, info in (("A", a), ("B", b)):
        if not info.hashed:
            raise ValueError(
                f"model {side} ({Path(info.path).name}) has no tensor hashes: inspect it with with_hashes=True or "
                "call hash_tensors first"
            )
    return compare_tensors(a.tensors, b.tensors)


def compare_tensors(a: Sequence[TensorEntry], b: Sequence[TensorEntry]) -> ModelComparison:
    """Compare two hashed tensor inventories (as stored rows or fresh from :func:`inspect_model`)."""
    available = Counter(t.sha256 for t in b)
    shared = []
    for tensor in a:
        if available[tensor.sha256] > 0:
            available[tensor.sha256] -= 1
            shared.append(tensor)

    def signatures(tensors: Sequence[TensorEntry]) -> dict[int, tuple[tuple[str, str], ...]]:
        layers: dict[int, list[TensorEntry]] = defaultdict(list)
        for t in tensors:
            if t.layer is not None:
                layers[t.layer].append(t)
        return {layer: tuple(sorted((t.component, t.sha256 or "") for t in ts)) for layer, ts in layers.items()}

    sig_a, sig_b = signatures(a), signatures(b)
    layers_of_b: dict[tuple[tuple[str, str], ...], list[int]] = defaultdict(list)
    for layer, signature in sig_b.items():
        layers_of_b[signature].append(layer)
    pairs = tuple(sorted((la, lb) for la, signature in sig_a.items() for lb in layers_of_b.get(signature, [])))

    components: dict[str, dict[str, int]] = {}
    for component in COMPONENTS:
        in_a = sum(t.n_params for t in a if t.component == component)
        in_b = sum(t.n_params for t in b if t.component == component)
        if in_a or in_b:
            components[component] = {"a": in_a, "b": in_b, "difference": in_a - in_b}

    params_a, params_b = sum(t.n_params for t in a), sum(t.n_params for t in b)
    bytes_a, bytes_b = sum(t.n_bytes for t in a), sum(t.n_bytes for t in b)
    return ModelComparison(
        params_a=params_a,
        params_b=params_b,
        bytes_a=bytes_a,
        bytes_b=bytes_b,
        param_ratio=params_a / params_b if params_b else None,
        byte_ratio=bytes_a / bytes_b if bytes_b else None,
        shared_tensors=len(shared),
        shared_params=sum(t.n_params for t in shared),
        shared_bytes=sum(t.n_bytes for t in shared),
        layers_a=len(sig_a),
        layers_b=len(sig_b),
        shared_layer_pairs=pairs,
        components=components,
    )
