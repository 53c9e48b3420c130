"""Export trained coders in the formats the interpretability ecosystem loads.

* circuit-tracer (decoderesearch/circuit-tracer) per-layer transcoder set: a folder with ``config.yaml``
  (``model_kind: transcoder_set``, hooks ``mlp.hook_in`` / ``mlp.hook_out`` — for llama these are the
  output of ``post_attention_layernorm`` and the MLP output, what our shards hold — ``activation: topk``
  and ``k``) and one ``layer_{i}.safetensors`` per layer with ``W_enc`` and ``W_dec`` both
  ``(d_transcoder, d_model)``, ``b_enc``, ``b_dec`` and, for skip transcoders, ``W_skip`` ``(d_model, d_model)``.
  Its ``TranscoderSet`` needs a transcoder for every layer 0…N−1, so a partial set is refused.
  circuit-tracer's ``TopK`` keeps the k largest pre-activations without a ReLU, so its outputs equal ours
  whenever at least k pre-activations of a token are positive (the normal regime; with fewer, it keeps
  small negative values where ours has zeros).
* SAELens: a folder with ``cfg.json`` and ``sae_weights.safetensors`` (``W_enc`` ``(d_in, d_sae)``, ``b_enc``,
  ``W_dec`` ``(d_sae, d_out)``, ``b_dec``, ``W_skip`` ``(d_out, d_in)``). A skip transcoder is written as
  architecture ``skip_transcoder``, a transcoder as ``transcoder``, an SAE as ``topk`` (exact: SAELens'
  ``TopKSAE`` applies top-k then ReLU, as ours). SAELens' transcoder classes apply a plain ReLU; the
  top-k with its ``k`` is recorded in ``metadata`` (``activation: topk``) and must be applied to match.

Normalisation statistics are folded into the weights (:meth:`SparseCoder.folded_weights`): the exported
files map raw activations to raw activations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from .transcoders import SparseCoder

CIRCUIT_TRACER_INPUT_HOOK = "mlp.hook_in"
CIRCUIT_TRACER_OUTPUT_HOOK = "mlp.hook_out"
SAELENS_CONFIG_NAME = "cfg.json"
SAELENS_WEIGHTS_NAME = "sae_weights.safetensors"
_SAELENS_ARCHITECTURES = {"skip_transcoder": "skip_transcoder", "transcoder": "transcoder", "sae": "topk"}


class ExportError(ValueError):
    """Coders that cannot be written in the requested format."""


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def export_circuit_tracer(
    coders: Mapping[int, SparseCoder],
    directory: str | Path,
    *,
    n_layers: int,
    model_name: str | None = None,
    scan: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``{layer: coder}`` (every layer 0…n_layers−1) as a circuit-tracer transcoder set; returns the folder.

    Raises :class:`ExportError` for missing layers, SAEs (circuit-tracer replaces MLPs: it needs transcoders),
    or a set mixing kinds or widths (its ``TranscoderSet`` shares one width and one skip setting).
    """
    missing = sorted(set(range(n_layers)) - set(coders))
    extra = sorted(set(coders) - set(range(n_layers)))
    if missing or extra:
        raise ExportError(
            f"circuit-tracer needs a transcoder for every layer 0..{n_layers - 1} of the model; "
            + (f"missing layers {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"layers {extra} do not exist" if extra else "")
            + ". Train the missing layers (a capture of every layer) and export again"
        )
    kinds = {coder.kind for coder in coders.values()}
    if "sae" in kinds:
        raise ExportError(
            "circuit-tracer replaces each MLP with a transcoder (MLP input → MLP output); an SAE reconstructs the "
            "MLP output from itself and cannot stand in; export SAEs to SAELens instead"
        )
    if len(kinds) > 1:
        raise ExportError(f"a circuit-tracer set has one kind of transcoder; got {sorted(kinds)}")
    widths = {coder.d_sae for coder in coders.values()}
    ks = {coder.k for coder in coders.values()}
    if len(widths) > 1 or len(ks) > 1:
        raise ExportError(f"a circuit-tracer set shares one width and one k; got widths {widths}, k {ks}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for layer in range(n_layers):
        weights = coders[layer].folded_weights()
        tensors = {
            "W_enc": weights["W_enc"],  # (d_transcoder, d_model)
            "W_dec": weights["W_dec"],  # (d_transcoder, d_model)
            "b_enc": weights["b_enc"],
            "b_dec": weights["b_dec"],
        }
        if "W_skip" in weights:
            tensors["W_skip"] = weights["W_skip"]  # (d_model, d_model), applied as x @ W_skip.T
        save_file(
            {k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(directory / f"layer_{layer}.safetensors")
        )
    config = {
        "model_kind": "transcoder_set",
        "model_name": model_name,
        "scan": scan or (f"{model_name}-hartonomous" if model_name else "hartonomous"),
        "feature_input_hook": CIRCUIT_TRACER_INPUT_HOOK,
        "feature_output_hook": CIRCUIT_TRACER_OUTPUT_HOOK,
        "activation": "topk",
        "k": ks.pop(),
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return directory


def export_saelens(
    coder: SparseCoder,
    directory: str | Path,
    *,
    model_name: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write one coder as a SAELens ``cfg.json`` + ``sae_weights.safetensors`` folder; returns the folder."""
    layer = coder.config.layer
    weights = coder.folded_weights()
    tensors = {
        "W_enc": weights["W_enc"].T,  # (d_in, d_sae)
        "b_enc": weights["b_enc"],
        "W_dec": weights["W_dec"],  # (d_sae, d_out)
        "b_dec": weights["b_dec"],
    }
    if "W_skip" in weights:
        tensors["W_skip"] = weights["W_skip"]  # (d_out, d_in)
    mlp_in = f"blocks.{layer}.ln2.hook_normalized" if layer is not None else None
    mlp_out = f"blocks.{layer}.hook_mlp_out" if layer is not None else None
    metadata = {
        "model_name": model_name,
        "hook_name": mlp_out if coder.reads_output else mlp_in,
        "hf_hook_name": coder.config.hookpoint,
        "activation": "topk",
        "k": coder.k,
        "exported_by": "hartonomous",
    }
    if not coder.reads_output:
        metadata["hook_name_out"] = mlp_out
    config = {
        "architecture": _SAELENS_ARCHITECTURES[coder.kind],
        "d_in": coder.config.d_in,
        "d_sae": coder.d_sae,
        "dtype": _dtype_name(dtype),
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": metadata,
    }
    if coder.kind == "sae":
        config.update({"k": coder.k, "rescale_acts_by_decoder_norm": False})
    else:
        config["d_out"] = coder.config.d_out
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(directory / SAELENS_WEIGHTS_NAME))
    (directory / SAELENS_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return directory
