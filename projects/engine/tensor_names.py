"""What a tensor *is*, read from its name: which layer it belongs to and which component.

Two naming schemes matter for llama-family teachers:

* GGUF (llama.cpp):   ``blk.3.attn_q.weight``, ``blk.3.ffn_gate.weight``, ``token_embd.weight``,
  ``output_norm.weight``, ``output.weight``
* Hugging Face:       ``model.layers.3.self_attn.q_proj.weight``, ``model.layers.3.mlp.gate_proj.weight``,
  ``model.embed_tokens.weight``, ``model.norm.weight``, ``lm_head.weight``

Both map onto one vocabulary of components, so an inventory, a comparison or a pruning recipe
can talk about "layer 3's MLP gate" without caring which file format the teacher came in.
Anything not recognised is ``other`` (never an error: unknown tensors are inventoried, not refused).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# The closed set of components an inventory uses; `other` catches everything else (rope
# frequency tables, MoE routers, fused QKV of non-llama architectures, ...).
COMPONENTS: tuple[str, ...] = (
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_o",
    "mlp_gate",
    "mlp_up",
    "mlp_down",
    "norm",
    "embedding",
    "output_head",
    "other",
)

# The components every transformer block of a llama-family model must have for analysis
# (MLP capture hooks the gate/up/down trio; attention patching needs q/k/v/o).
LLAMA_BLOCK_COMPONENTS: tuple[str, ...] = COMPONENTS[: COMPONENTS.index("mlp_down") + 1]

_GGUF_BLOCK = re.compile(r"^blk\.(\d+)\.(.+?)(?:\.(?:weight|bias))?$")
_HF_BLOCK = re.compile(r"^(?:model\.)?layers\.(\d+)\.(.+?)(?:\.(?:weight|bias))?$")
_PARAM_SUFFIX = re.compile(r"\.(?:weight|bias)$")

# GGUF per-block tensor stems (llama.cpp's LLM_TENSOR_* names) → component.
_GGUF_BLOCK_COMPONENTS: dict[str, str] = {
    "attn_q": "attn_q",
    "attn_k": "attn_k",
    "attn_v": "attn_v",
    "attn_output": "attn_o",
    "ffn_gate": "mlp_gate",
    "ffn_up": "mlp_up",
    "ffn_down": "mlp_down",
    "attn_norm": "norm",
    "attn_norm_2": "norm",
    "ffn_norm": "norm",
    "attn_q_norm": "norm",
    "attn_k_norm": "norm",
    "post_attention_norm": "norm",
    "post_ffw_norm": "norm",
    "layer_output_norm": "norm",
}

# GGUF tensors outside the blocks.
_GGUF_GLOBAL_COMPONENTS: dict[str, str] = {
    "token_embd": "embedding",
    "output_norm": "norm",
    "output": "output_head",
    "token_embd_norm": "norm",
}

# Hugging Face per-layer module paths (after ``model.layers.N.``) → component.
_HF_BLOCK_COMPONENTS: dict[str, str] = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_o",
    "mlp.gate_proj": "mlp_gate",
    "mlp.up_proj": "mlp_up",
    "mlp.down_proj": "mlp_down",
    "input_layernorm": "norm",
    "post_attention_layernorm": "norm",
    "pre_feedforward_layernorm": "norm",
    "post_feedforward_layernorm": "norm",
    "self_attn.q_norm": "norm",
    "self_attn.k_norm": "norm",
}

# Hugging Face tensors outside the layers.
_HF_GLOBAL_COMPONENTS: dict[str, str] = {
    "model.embed_tokens": "embedding",
    "model.norm": "norm",
    "lm_head": "output_head",
}


class TensorRole(NamedTuple):
    """Where a tensor sits in the model."""

    layer: int | None
    """Transformer block index, or None for tensors outside the blocks (embedding, final norm, head)."""
    component: str
    """One of :data:`COMPONENTS`."""


def classify_tensor(name: str) -> TensorRole:
    """Layer index and component of a tensor, from its GGUF or Hugging Face name.

    >>> classify_tensor("blk.2.ffn_gate.weight")
    TensorRole(layer=2, component='mlp_gate')
    >>> classify_tensor("model.layers.0.self_attn.o_proj.weight")
    TensorRole(layer=0, component='attn_o')
    >>> classify_tensor("lm_head.weight")
    TensorRole(layer=None, component='output_head')
    """
    match = _GGUF_BLOCK.match(name)
    if match:
        return TensorRole(int(match.group(1)), _GGUF_BLOCK_COMPONENTS.get(match.group(2), "other"))
    match = _HF_BLOCK.match(name)
    if match:
        return TensorRole(int(match.group(1)), _HF_BLOCK_COMPONENTS.get(match.group(2), "other"))
    stem = _PARAM_SUFFIX.sub("", name)
    component = _GGUF_GLOBAL_COMPONENTS.get(stem) or _HF_GLOBAL_COMPONENTS.get(stem) or "other"
    return TensorRole(None, component)
