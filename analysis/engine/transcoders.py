"""Sparse coders of an MLP: the skip transcoder, and the two baselines at the same API.

* :class:`SkipTranscoder` (arXiv 2501.18823): ``f(x) = W_dec · topk(ReLU(W_enc · x + b_enc)) + W_skip · x + b_dec``,
  trained to produce the MLP output from the MLP input;
* :class:`Transcoder`: the same without ``W_skip``;
* :class:`SparseAutoencoder`: reconstructs the MLP output from the MLP output (no skip).

Weights follow circuit-tracer's orientation: ``W_enc`` and ``W_dec`` are both ``(d_sae, d_model)``,
``W_skip`` is ``(d_out, d_in)``. Every coder works in a normalised space: the input is centred with a
stored per-dimension mean and divided by a stored scalar scale (so that its mean squared norm is
``d_in``), the output likewise; :meth:`SparseCoder.forward` takes and returns raw activations. Decoder rows
are unit-norm in that space (:meth:`SparseCoder.normalize_decoder_` after each step).
Saved as ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

KINDS = ("skip_transcoder", "transcoder", "sae")
"""Coder kinds: skip transcoder (default), transcoder without skip, sparse autoencoder."""
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class CoderConfig:
    """Shape and sparsity of a sparse coder."""

    d_in: int
    """Width of the input (the MLP input; for an SAE, the MLP output)."""
    kind: str = "skip_transcoder"
    """One of ``KINDS``."""
    expansion: int = 8
    """Latents per input dimension: ``d_sae = expansion * d_in``."""
    k: int = 32
    """Latents kept per token (top-k)."""
    d_out: int | None = None
    """Width of the output; defaults to ``d_in``."""
    layer: int | None = None
    """Decoder block of the teacher this coder belongs to."""
    hookpoint: str | None = None
    """Module name of the MLP it replaces (``model.layers.3.mlp``)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")
        if self.d_in < 1 or self.expansion < 1:
            raise ValueError("d_in and expansion must be at least 1")
        if self.d_out is None:
            self.d_out = self.d_in
        if not 1 <= self.k <= self.d_sae:
            raise ValueError(f"k must be between 1 and d_sae = {self.d_sae} (got {self.k})")

    @property
    def d_sae(self) -> int:
        """Number of latents (features)."""
        return self.expansion * self.d_in


class EncoderOutput(NamedTuple):
    """Sparse latent activations."""

    top_acts: torch.Tensor
    """(N, k) values of the kept latents (≥ 0; zero where fewer than k were positive)."""
    top_indices: torch.Tensor
    """(N, k) their indices."""
    pre_acts: torch.Tensor
    """(N, d_sae) pre-activations ``W_enc·x + b_enc`` in normalised space (after ReLU)."""


class ForwardOutput(NamedTuple):
    """A training forward pass in normalised space."""

    output: torch.Tensor
    """(N, d_out) prediction of the normalised target."""
    top_acts: torch.Tensor
    top_indices: torch.Tensor
    fvu: torch.Tensor
    """() fraction of the target's variance unexplained (the training loss)."""
    auxk_loss: torch.Tensor
    """() auxiliary-k loss: how well the dead latents explain the residual (0 without dead latents)."""


def decode_sparse(top_acts: torch.Tensor, top_indices: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``Σ_j top_acts[:, j] · weight[top_indices[:, j]]``: (N, k) × (d_sae, d) → (N, d) without a dense (N, d_sae)."""
    return F.embedding_bag(top_indices, weight, per_sample_weights=top_acts.to(weight.dtype), mode="sum")


class SparseCoder(nn.Module):
    """Base of the three coders; use :class:`SkipTranscoder`, :class:`Transcoder`, :class:`SparseAutoencoder`."""

    kind: ClassVar[str] = ""
    has_skip: ClassVar[bool] = False
    reads_output: ClassVar[bool] = False
    """True for the SAE: its input is the MLP output, not the MLP input."""

    def __init__(self, config: CoderConfig, seed: int | None = 0) -> None:
        super().__init__()
        if config.kind != self.kind:
            raise ValueError(f"{type(self).__name__} needs kind {self.kind!r}, got {config.kind!r}")
        self.config = config
        d_in, d_out, d_sae = config.d_in, config.d_out, config.d_sae
        assert d_out is not None
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if self.reads_output:
            # An autoencoder's encoder starts as its decoder's transpose (Gao et al. 2024): one space.
            w = torch.randn(d_sae, d_out, generator=generator)
            dec = w / w.norm(dim=1, keepdim=True)
            enc = dec.clone()
        else:
            # A transcoder reads one space and writes another: a tied start means nothing there. The encoder
            # starts uniform in ±1/sqrt(d_in) (torch's Linear default) and the decoder at zero, as sparsify's
            # transcoders do; the first step gives every decoder row a direction (then unit norm). Measured
            # on SmolLM2 (bench/README.md): lower held-out FVU than the tied start at every layer tried.
            bound = 1 / math.sqrt(d_in)
            enc = (torch.rand(d_sae, d_in, generator=generator) * 2 - 1) * bound
            dec = torch.zeros(d_sae, d_out)
        self.W_enc = nn.Parameter(enc.contiguous())  # (d_sae, d_in)
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(dec.contiguous())  # (d_sae, d_out)
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_out, d_in)) if self.has_skip else None
        self.register_buffer("in_mean", torch.zeros(d_in))
        self.register_buffer("in_scale", torch.ones(()))
        self.register_buffer("out_mean", torch.zeros(d_out))
        self.register_buffer("out_scale", torch.ones(()))

    @staticmethod
    def create(config: CoderConfig, seed: int | None = 0) -> SparseCoder:
        """A new coder of ``config.kind``."""
        return CODER_CLASSES[config.kind](config, seed=seed)

    @property
    def d_sae(self) -> int:
        return self.config.d_sae

    @property
    def k(self) -> int:
        return self.config.k

    def source_target(self, mlp_in: torch.Tensor, mlp_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the coder reads and what it predicts, from an MLP's input and output."""
        return (mlp_out if self.reads_output else mlp_in), mlp_out

    # --- normalisation -------------------------------------------------------------------------------
    @torch.no_grad()
    def set_normalization(
        self, in_mean: torch.Tensor, in_scale: float, out_mean: torch.Tensor, out_scale: float
    ) -> None:
        """Store the statistics :meth:`forward` normalises with (see :func:`normalization_stats`)."""
        self.in_mean.copy_(in_mean)
        self.in_scale.fill_(float(in_scale))
        self.out_mean.copy_(out_mean)
        self.out_scale.fill_(float(out_scale))

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.in_mean) / self.in_scale

    def normalize_output(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.out_mean) / self.out_scale

    def denormalize_output(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.out_scale + self.out_mean

    # --- computation in normalised space ------------------------------------------------------------
    def encode_normalized(self, xn: torch.Tensor) -> EncoderOutput:
        """Top-k latents of a normalised input ``(N, d_in)``."""
        pre = F.relu(F.linear(xn, self.W_enc, self.b_enc))  # (N, d_sae)
        top_acts, top_indices = pre.topk(self.k, dim=-1, sorted=False)
        return EncoderOutput(top_acts, top_indices, pre)

    def decode_normalized(
        self, top_acts: torch.Tensor, top_indices: torch.Tensor, xn: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised output from latents (and, for a skip transcoder, the normalised input)."""
        out = decode_sparse(top_acts, top_indices, self.W_dec) + self.b_dec
        if self.W_skip is not None:
            if xn is None:
                raise ValueError("a skip transcoder needs its input to decode")
            out = out + F.linear(xn, self.W_skip)
        return out

    def forward_train(
        self, xn: torch.Tensor, yn: torch.Tensor, dead_mask: torch.Tensor | None = None, k_aux: int | None = None
    ) -> ForwardOutput:
        """Prediction, FVU and auxiliary-k loss on normalised source ``xn`` and target ``yn``."""
        enc = self.encode_normalized(xn)
        out = self.decode_normalized(enc.top_acts, enc.top_indices, xn)
        error = yn - out
        total_variance = (yn - yn.mean(0)).pow(2).sum()
        fvu = error.pow(2).sum() / total_variance
        auxk = out.new_zeros(())
        if dead_mask is not None and bool(dead_mask.any()):
            n_dead = int(dead_mask.sum())
            k_aux = min(k_aux or yn.shape[-1] // 2, n_dead)
            # Dead latents' pre-activations, everyone else's masked away (Gao et al. 2024, appendix A.2).
            dead_pre = torch.where(dead_mask, enc.pre_acts, torch.zeros_like(enc.pre_acts))
            aux_acts, aux_indices = dead_pre.topk(k_aux, dim=-1, sorted=False)
            aux_out = decode_sparse(aux_acts, aux_indices, self.W_dec)
            error_detached = error.detach()
            auxk = (aux_out - error_detached).pow(2).sum() / (error_detached - error_detached.mean(0)).pow(2).sum()
            auxk = torch.nan_to_num(auxk, nan=0.0, posinf=0.0)
        return ForwardOutput(out, enc.top_acts, enc.top_indices, fvu, auxk)

    # --- raw space ----------------------------------------------------------------------------------
    def _flat_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1]).to(device=self.W_enc.device, dtype=self.W_enc.dtype)

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        """Top-k latents of a raw source ``(..., d_in)`` (flattened to ``(N, d_in)``), on the coder's device."""
        return self.encode_normalized(self.normalize_input(self._flat_input(x)))

    def sparse_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(top_acts, top_indices)`` of a raw source, each ``(N, k)``, on the CPU (where statistics accumulate)."""
        enc = self.encode(x)
        return enc.top_acts.cpu(), enc.top_indices.cpu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw output ``(..., d_out)`` for a raw source ``(..., d_in)`` (on the coder's device, in ``x``'s dtype)."""
        shape = x.shape
        xn = self.normalize_input(self._flat_input(x))
        enc = self.encode_normalized(xn)
        out = self.denormalize_output(self.decode_normalized(enc.top_acts, enc.top_indices, xn))
        return out.reshape(*shape[:-1], -1).to(x.dtype)

    def replace_mlp(self, mlp_in: torch.Tensor, mlp_out: torch.Tensor) -> torch.Tensor:
        """What the MLP's output becomes when this coder replaces it."""
        source, _ = self.source_target(mlp_in, mlp_out)
        return self.forward(source)

    def feature_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Dense ``(N, d_sae)`` feature activations of a raw source (zeros outside the top k)."""
        enc = self.encode(x)
        dense = torch.zeros(enc.top_acts.shape[0], self.d_sae, dtype=enc.top_acts.dtype, device=enc.top_acts.device)
        return dense.scatter_(1, enc.top_indices, enc.top_acts)

    # --- decoder constraint -------------------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder row to unit norm (in normalised space)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def fold_decoder_norms_(self) -> None:
        """Unit-norm decoder rows with each row's norm moved into its latent (encoder row and bias).

        ReLU is positively homogeneous, so every latent's contribution ``act · W_dec row`` is unchanged; only
        the top-k choice between latents whose scaled pre-activations cross can differ.
        """
        norms = self.W_dec.norm(dim=1).clamp_min(1e-8)
        self.W_dec.div_(norms[:, None])
        self.W_enc.mul_(norms[:, None])
        self.b_enc.mul_(norms)

    @torch.no_grad()
    def remove_parallel_gradient_(self) -> None:
        """Drop the part of ``W_dec``'s gradient that would only change row norms (undone by renormalising)."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad.sub_(parallel * self.W_dec)

    # --- raw-space weights (export) -------------------------------------------------------------------
    @torch.no_grad()
    def folded_weights(self) -> dict[str, torch.Tensor]:
        """Weights with the normalisation folded in: raw input → raw output, same latent activations.

        ``W_enc`` (d_sae, d_in), ``b_enc`` (d_sae), ``W_dec`` (d_sae, d_out), ``b_dec`` (d_out) and, for a skip
        transcoder, ``W_skip`` (d_out, d_in), such that
        ``W_dec.T @ topk(relu(W_enc @ x + b_enc)) + W_skip @ x + b_dec == forward(x)``.
        """
        si, so = self.in_scale, self.out_scale
        w_enc = self.W_enc / si
        b_enc = self.b_enc - self.W_enc @ self.in_mean / si
        w_dec = self.W_dec * so
        b_dec = self.b_dec * so + self.out_mean
        weights = {"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": b_dec}
        if self.W_skip is not None:
            w_skip = self.W_skip * (so / si)
            weights["W_skip"] = w_skip
            weights["b_dec"] = b_dec - w_skip @ self.in_mean
        return {name: t.detach().clone().contiguous() for name, t in weights.items()}

    def decoder_directions(self) -> torch.Tensor:
        """(d_sae, d_out) what each feature adds to the raw MLP output per unit of activation."""
        return (self.W_dec * self.out_scale).detach()

    # --- persistence --------------------------------------------------------------------------------
    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``; returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"kind": self.kind})
        data = {**asdict(self.config), "d_sae": self.d_sae, **({"extra": extra} if extra else {})}
        (directory / CONFIG_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

    @staticmethod
    def load(directory: str | Path, device: str | torch.device = "cpu") -> SparseCoder:
        """Read a coder saved by :meth:`save` (safetensors only, no pickle)."""
        directory = Path(directory)
        data = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
        fields = {k: data[k] for k in ("d_in", "kind", "expansion", "k", "d_out", "layer", "hookpoint") if k in data}
        coder = SparseCoder.create(CoderConfig(**fields), seed=None)
        coder.load_state_dict(load_file(str(directory / WEIGHTS_NAME), device=str(device)))
        return coder.to(device)


class SkipTranscoder(SparseCoder):
    """MLP input → MLP output through top-k latents plus a linear skip connection."""

    kind = "skip_transcoder"
    has_skip = True


class Transcoder(SparseCoder):
    """MLP input → MLP output through top-k latents (no skip): the first baseline."""

    kind = "transcoder"


class SparseAutoencoder(SparseCoder):
    """MLP output → MLP output through top-k latents: the second baseline."""

    kind = "sae"
    reads_output = True


CODER_CLASSES: dict[str, type[SparseCoder]] = {
    "skip_transcoder": SkipTranscoder,
    "transcoder": Transcoder,
    "sae": SparseAutoencoder,
}


class NormalizationStats(NamedTuple):
    """Per-dimension mean and scalar scale of a stream of activations."""

    mean: torch.Tensor
    """(d,) per-dimension mean."""
    scale: float
    """``sqrt(E‖x − mean‖² / d)``: dividing by it gives mean squared norm ``d``."""


class RunningStats:
    """Streaming mean and mean squared deviation of ``(N, d)`` batches (float64, Chan's update)."""

    def __init__(self, d: int) -> None:
        self.n = 0
        self.mean = torch.zeros(d, dtype=torch.float64)
        self.m2 = 0.0  # Σ ‖x − mean‖²

    def update(self, x: torch.Tensor) -> None:
        x = x.to(torch.float64)
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(0)
        m2_b = float((x - mean_b).pow(2).sum())
        delta = mean_b - self.mean
        total = self.n + n_b
        self.mean = self.mean + delta * (n_b / total)
        self.m2 += m2_b + float(delta.pow(2).sum()) * self.n * n_b / total
        self.n = total

    def result(self) -> NormalizationStats:
        d = self.mean.shape[0]
        scale = math.sqrt(self.m2 / max(self.n, 1) / d) if self.n else 1.0
        return NormalizationStats(self.mean.to(torch.float32), scale if scale > 0 else 1.0)
