"""Activation capture: stream tokenised documents through the teacher and record MLP inputs and outputs in shards.

Documents are split into sequences of at most ``seq_len`` tokens (never packed across documents), the
sequences grouped into batches of ``batch_size`` (right-padded with an attention mask), and forward hooks
on the selected MLP modules record, for every real token, the MLP input (the post-attention norm's output)
and the MLP output. The forward pass stops after the last hooked layer and never computes logits.

Resuming is deterministic: the batch stream is a pure function of the documents and the settings, so a
resumed capture skips the batches already in complete shards without running them, recomputes the one
batch that straddles the last shard boundary, and writes byte-identical shards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .hookpoints import DEFAULT_MLP_PATTERN, model_architecture, resolve_mlp_hookpoints
from .shards import (
    MANIFEST_NAME,
    SHARD_DTYPES,
    SPEC_NAME,
    InsufficientDiskError,
    ShardWriter,
    estimate_capture_bytes,
    require_free_disk,
)

Progress = Callable[..., None]
"""``progress(done, total, **metrics)``: called after each batch (tokens done, token budget)."""
ShouldStop = Callable[[], bool]
"""Checked after each batch; True stops the capture cleanly (complete shards stay, to resume from)."""


class EmptyDatasetError(ValueError):
    """The document stream held no tokens to capture."""


@dataclass
class CaptureConfig:
    """What to capture and how."""

    n_tokens: int
    """Token budget: the capture stops after this many tokens (or when the documents run out)."""
    hookpoints: list[str] = field(default_factory=lambda: [DEFAULT_MLP_PATTERN])
    """Module-name patterns selecting the MLPs (``model.layers.*.mlp``, ``model.layers.3.mlp`` ...)."""
    seq_len: int = 256
    """Longest sequence the model sees; longer documents are split into several sequences."""
    batch_size: int = 8
    """Sequences per forward pass."""
    tokens_per_shard: int = 4096
    """Tokens per shard file (the last shard may hold fewer). The writer buffers one shard: about
    ``tokens_per_shard × layers × 2 × d_model × 2`` bytes (283 MB for all 30 layers of SmolLM2-135M)."""
    dtype: str = "float16"
    """Storage type of the activations: float16 or bfloat16."""
    pad_token_id: int = 0
    """Token id put in padding positions (masked out, never recorded)."""

    def __post_init__(self) -> None:
        if self.n_tokens < 1:
            raise ValueError(f"n_tokens must be at least 1 (got {self.n_tokens})")
        if self.seq_len < 1 or self.batch_size < 1 or self.tokens_per_shard < 1:
            raise ValueError("seq_len, batch_size and tokens_per_shard must each be at least 1")
        if self.dtype not in SHARD_DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not supported; use one of {sorted(SHARD_DTYPES)}")
        if isinstance(self.hookpoints, str):
            self.hookpoints = [self.hookpoints]
        self.hookpoints = list(self.hookpoints)


class CapturePlan(NamedTuple):
    """What a capture will do, known before it starts (shown to a person before they confirm)."""

    layers: list[int]
    """Decoder-block indices captured."""
    hookpoints: dict[int, str]
    """``{layer: module name}``."""
    d_model: int
    """Width of the MLP input and output."""
    n_layers_model: int
    """Decoder blocks the model has."""
    estimated_bytes: int
    """Disk the full token budget takes."""
    n_shards: int
    """Shards the full token budget makes."""


class CaptureResult(NamedTuple):
    """Outcome of :func:`capture_mlp_activations`."""

    directory: Path
    complete: bool
    """True when every shard and the manifest are written."""
    stopped: bool
    """True when ``should_stop`` ended the run early (resume to finish)."""
    n_tokens: int
    """Tokens in complete shards."""
    n_shards: int
    resumed_from_tokens: int
    """Tokens already on disk when this run started (0 for a fresh capture)."""
    tokens_per_second: float
    """Tokens recorded per second of this run."""
    bytes: int
    """Bytes of the shards (from the manifest; 0 while incomplete)."""
    manifest: dict[str, Any] | None


def _n_layers(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "num_hidden_layers", 0) or 0)


def plan_capture(model: nn.Module, config: CaptureConfig) -> CapturePlan:
    """Resolve the hook points and estimate the disk a capture takes (errors for bad patterns or models)."""
    hookpoints = resolve_mlp_hookpoints(model, config.hookpoints)
    d_model = int(model.config.hidden_size)
    layers = list(hookpoints)
    return CapturePlan(
        layers=layers,
        hookpoints=hookpoints,
        d_model=d_model,
        n_layers_model=_n_layers(model),
        estimated_bytes=estimate_capture_bytes(
            config.n_tokens, len(layers), d_model, config.dtype, tokens_per_shard=config.tokens_per_shard
        ),
        n_shards=-(-config.n_tokens // config.tokens_per_shard),
    )


class DocumentBatch(NamedTuple):
    """One forward pass's worth of sequences, right-padded."""

    input_ids: torch.Tensor
    """(B, T) token ids (``pad_token_id`` in padding)."""
    attention_mask: torch.Tensor
    """(B, T) 1 for real tokens."""
    doc_ids: torch.Tensor
    """(n,) document id of each real token, row-major."""
    n_tokens: int
    """Real tokens in the batch."""


def batch_documents(documents: Iterable[Sequence[int]], config: CaptureConfig) -> Iterator[DocumentBatch]:
    """The deterministic batch stream a capture runs: sequences of ≤ seq_len per document, ≤ n_tokens in all."""
    budget = config.n_tokens
    pending: list[tuple[int, list[int]]] = []

    def make(seqs: list[tuple[int, list[int]]]) -> DocumentBatch:
        width = max(len(s) for _, s in seqs)
        ids = torch.full((len(seqs), width), config.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        docs = []
        for row, (doc, seq) in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
            docs.extend([doc] * len(seq))
        return DocumentBatch(ids, mask, torch.tensor(docs, dtype=torch.int64), len(docs))

    for doc_id, document in enumerate(documents):
        tokens = [int(t) for t in document]
        for offset in range(0, len(tokens), config.seq_len):
            if budget <= 0:
                break
            seq = tokens[offset : offset + config.seq_len][:budget]
            budget -= len(seq)
            pending.append((doc_id, seq))
            if len(pending) == config.batch_size:
                yield make(pending)
                pending = []
        if budget <= 0:
            break
    if pending:
        yield make(pending)


class _StopForward(Exception):
    """Raised by the last hook: the layers after it and the unembedding are not needed."""


def _first_tensor(args: tuple, kwargs: Mapping[str, Any]) -> torch.Tensor:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    raise RuntimeError("the MLP was called without a tensor argument")  # pragma: no cover


class MLPRecorder:
    """Forward hooks recording the input and output of MLP modules during a forward pass (a context manager).

    ``stop_after`` names the layer after which the forward pass is cut short (:meth:`run` handles that).
    Also used by metrics and feature runs that need a layer's MLP input on new text.
    """

    def __init__(self, modules: Mapping[int, nn.Module], stop_after: int | None = None) -> None:
        self.modules = dict(modules)
        self.stop_after = stop_after
        self.records: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> MLPRecorder:
        for layer, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(layer), with_kwargs=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, layer: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
            self.records[layer] = (_first_tensor(args, kwargs).detach(), output.detach())
            if layer == self.stop_after:
                raise _StopForward

        return hook

    def run(self, forward: Callable[[], object]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Call ``forward()`` (which runs the model), returning ``{layer: (mlp_in, mlp_out)}`` of that pass."""
        self.records = {}
        try:
            forward()
        except _StopForward:
            pass
        return self.records


def _backbone(model: nn.Module) -> nn.Module:
    """The decoder stack without the unembedding (``LlamaForCausalLM.model``): logits are not needed."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) else model


def input_device(model: nn.Module) -> torch.device:
    """Device the model's token embedding lives on (where inputs must go, also with accelerate offloading)."""
    return model.get_input_embeddings().weight.device


class TokenActivations(NamedTuple):
    """MLP inputs and outputs of the real tokens of one forward batch."""

    activations: dict[int, tuple[torch.Tensor, torch.Tensor]]
    """``{layer: (mlp_in, mlp_out)}``, each (n, d_model), on the model's device and in its dtype."""
    token_ids: torch.Tensor
    """(n,) int32."""
    doc_ids: torch.Tensor
    """(n,) int64."""
    positions: torch.Tensor
    """(n,) int32 positions in the sequence."""
    stream_tokens: int
    """Tokens of the document stream up to the end of this batch (skipped ones included)."""


def stream_mlp_activations(
    model: nn.Module,
    documents: Iterable[Sequence[int]],
    config: CaptureConfig,
    *,
    device: torch.device | str | None = None,
    skip_tokens: int = 0,
) -> Iterator[TokenActivations]:
    """Run the batch stream of ``documents`` through ``model``, yielding the hooked MLPs' activations per batch.

    The first ``skip_tokens`` tokens of the stream are not returned; batches lying wholly inside them are not
    run at all (how a capture resumes). The forward pass stops after the last hooked layer.
    """
    plan = plan_capture(model, config)
    device = torch.device(device) if device is not None else input_device(model)
    modules = {layer: model.get_submodule(name) for layer, name in plan.hookpoints.items()}
    last = max(plan.layers)
    recorder = MLPRecorder(modules, stop_after=last if last < plan.n_layers_model - 1 else None)
    backbone = _backbone(model)
    was_training = model.training
    model.eval()
    cursor = 0
    try:
        with recorder:  # no grad mode around the yield: it would leak into the caller's code
            for batch in batch_documents(documents, config):
                if cursor + batch.n_tokens <= skip_tokens:
                    cursor += batch.n_tokens
                    continue
                ids = batch.input_ids.to(device)
                mask = batch.attention_mask.to(device)
                with torch.inference_mode():  # only around the forward: its outputs are copied by indexing
                    records = recorder.run(lambda ids=ids, mask=mask: backbone(input_ids=ids, attention_mask=mask))
                keep = mask.bool()
                drop = max(0, skip_tokens - cursor)
                cursor += batch.n_tokens
                positions = torch.arange(ids.shape[1], device=device).expand_as(ids)[keep].to(torch.int32).cpu()
                yield TokenActivations(
                    activations={
                        layer: (x_in[keep][drop:], x_out[keep][drop:]) for layer, (x_in, x_out) in records.items()
                    },
                    token_ids=ids[keep].to(torch.int32).cpu()[drop:],
                    doc_ids=batch.doc_ids[drop:],
                    positions=positions[drop:],
                    stream_tokens=cursor,
                )
    finally:
        if was_training:
            model.train()


def capture_mlp_activations(
    model: nn.Module,
    documents: Iterable[Sequence[int]],
    directory: str | Path,
    config: CaptureConfig,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    spec: Mapping[str, Any] | None = None,
    check_disk: bool = True,
    device: torch.device | str | None = None,
) -> CaptureResult:
    """Capture MLP inputs/outputs of ``model`` over ``documents`` (token-id lists) into shards in ``directory``.

    ``spec`` adds identifying fields (model and dataset ids) to ``capture.json``; resuming with another spec
    or config is refused. A directory holding complete shards is resumed. Raises
    :class:`~analysis.engine.hookpoints.HookpointError` / ``UnsupportedModelError`` for bad patterns or models,
    :class:`~analysis.engine.shards.InsufficientDiskError` when the rest of the capture does not fit the free
    disk, and :class:`EmptyDatasetError` when the documents hold no token.
    """
    plan = plan_capture(model, config)
    directory = Path(directory)
    fresh = not (directory / SPEC_NAME).exists()
    writer = ShardWriter(
        directory,
        plan.layers,
        plan.d_model,
        dtype=config.dtype,
        tokens_per_shard=config.tokens_per_shard,
        spec={
            **dict(spec or {}),
            "config": asdict(config),
            "model_type": model_architecture(model),
            "hookpoints": {str(k): v for k, v in plan.hookpoints.items()},
            "n_layers_model": plan.n_layers_model,
        },
    )
    resume_at = writer.tokens_written
    if writer.complete:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
        return CaptureResult(directory, True, False, manifest["n_tokens"], manifest["n_shards"], resume_at, 0.0,
                             manifest["bytes"], manifest)  # fmt: skip
    if check_disk:
        remaining = max(0, config.n_tokens - resume_at)
        try:
            require_free_disk(
                directory,
                estimate_capture_bytes(
                    remaining, len(plan.layers), plan.d_model, config.dtype, config.tokens_per_shard
                ),
            )
        except InsufficientDiskError:
            if fresh:  # leave no trace of a capture that never started
                (directory / SPEC_NAME).unlink(missing_ok=True)
            raise
    shard_dtype = SHARD_DTYPES[config.dtype]
    recorded = 0
    started = time.perf_counter()
    stopped = False
    stream = stream_mlp_activations(model, documents, config, device=device, skip_tokens=resume_at)
    with closing(stream):  # a break must remove the hooks now, not when the generator is collected
        for step in stream:
            acts = {
                layer: (x_in.to(shard_dtype).cpu(), x_out.to(shard_dtype).cpu())
                for layer, (x_in, x_out) in step.activations.items()
            }
            writer.add(acts, step.token_ids, step.doc_ids, step.positions)
            recorded += int(step.token_ids.shape[0])
            if progress is not None:
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress(
                    min(step.stream_tokens, config.n_tokens),
                    config.n_tokens,
                    tokens_per_second=recorded / elapsed,
                    shards=writer.completed_shards,
                )
            if should_stop is not None and should_stop():
                stopped = True
                break
    elapsed = max(time.perf_counter() - started, 1e-9)
    rate = recorded / elapsed
    if stopped:
        return CaptureResult(directory, False, True, writer.tokens_written, writer.completed_shards, resume_at, rate,
                             0, None)  # fmt: skip
    if writer.tokens_added == 0:
        raise EmptyDatasetError("the dataset holds no tokens to capture (every document is empty)")
    manifest = writer.close(
        {
            "hookpoints": {str(k): v for k, v in plan.hookpoints.items()},
            "seq_len": config.seq_len,
            "batch_size": config.batch_size,
            "token_budget": config.n_tokens,
            "tokens_per_second": rate,
            "resumed_from_tokens": resume_at,
        }
    )
    return CaptureResult(directory, True, False, manifest["n_tokens"], manifest["n_shards"], resume_at, rate,
                         manifest["bytes"], manifest)  # fmt: skip
