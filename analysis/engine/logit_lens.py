"""Logit lens of features: which output tokens a feature's decoder direction promotes and suppresses.

A feature adds its decoder direction (raw MLP-output space) to the residual stream; read through the final
norm's weight and the unembedding, that direction gives a logit change per vocabulary token. The norm's
per-token rescaling is left out (it depends on the rest of the residual stream), so the ranking, not the
scale, is what the lens tells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .hookpoints import require_supported
from .transcoders import SparseCoder


class LogitLens(NamedTuple):
    """Top promoted and suppressed tokens per feature (rows follow ``features``)."""

    features: torch.Tensor
    """(F,) feature indices."""
    promoted_ids: torch.Tensor
    """(F, top_n) token ids with the largest logit change, largest first."""
    promoted_logits: torch.Tensor
    """(F, top_n) their logit change per unit of activation."""
    suppressed_ids: torch.Tensor
    """(F, top_n) token ids with the most negative logit change, most negative first."""
    suppressed_logits: torch.Tensor
    """(F, top_n) their logit change."""


def unembedding(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(final norm weight (d_model,), unembedding (vocab, d_model))`` of a supported (llama) model."""
    require_supported(model)
    norm = model.model.norm.weight.detach()
    return norm, model.get_output_embeddings().weight.detach()


def logit_lens(
    coder: SparseCoder,
    model: nn.Module,
    features: Sequence[int] | None = None,
    *,
    top_n: int = 10,
    chunk: int = 256,
) -> LogitLens:
    """Tokens each feature's decoder direction promotes and suppresses through ``model``'s unembedding."""
    norm, w_u = unembedding(model)
    directions = coder.decoder_directions()  # (d_sae, d_model)
    index = torch.arange(coder.d_sae) if features is None else torch.as_tensor(list(features), dtype=torch.long)
    top_n = min(top_n, w_u.shape[0])
    parts: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for a in range(0, len(index), chunk):
            rows = directions[index[a : a + chunk]].to(device=w_u.device, dtype=torch.float32)
            logits = (rows * norm.float()) @ w_u.float().T  # (F_chunk, vocab)
            up = logits.topk(top_n, dim=1)
            down = (-logits).topk(top_n, dim=1)
            parts.append((up.indices.cpu(), up.values.cpu(), down.indices.cpu(), (-down.values).cpu()))
    if not parts:
        empty = torch.empty(0, top_n)
        return LogitLens(index, empty.long(), empty, empty.long(), empty)
    return LogitLens(index, *(torch.cat([p[i] for p in parts]) for i in range(4)))
