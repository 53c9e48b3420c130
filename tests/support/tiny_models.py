"""Tiny real llama models for tests: random weights, written as GGUF and as a Hugging Face folder.

One set of weights (Hugging Face names, PyTorch shapes, float32) is the source of truth:

    config = TinyLlamaConfig()
    weights = llama_weights(config, seed=0)
    write_gguf_llama(tmp_path / "tiny.gguf", config, weights, tensor_type="Q8_0")
    write_hf_llama(tmp_path / "tiny-hf", config, weights, shards=2)

The GGUF is written the way llama.cpp's convert_hf_to_gguf.py writes a llama (GGUF tensor names,
Q/K rows permuted for llama.cpp's rotary layout, 1-D tensors kept F32, the rest in ``tensor_type``),
with a byte-fallback SentencePiece-style vocabulary: the layout llama.cpp expects (not yet checked
by loading it with llama.cpp, which is not installed here). The folder holds
config.json, tokenizer files and ``.safetensors`` shards with ``model.safetensors.index.json``, as
``save_pretrained(..., safe_serialization=True)`` writes them. Only numpy, gguf and safetensors are
needed (no torch). Every weight, norms included, is random so that no two tensors hash alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quantize
from safetensors.numpy import save_file

# Specials, the 256 byte-fallback pieces, "▁" and the letters, and two merged pieces.
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
_PIECES = ["▁", *"abcdefghijklmnopqrstuvwxyz", "▁a", "▁t"]
_MERGES = ["▁ a", "▁ t"]

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<s>' + message['role'] + '\\n' + message['content'] + '</s>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant\\n' }}{% endif %}"
)


def tiny_vocab() -> list[tuple[str, float, int]]:
    """(piece, score, GGUF token type) for every token id, in id order."""
    vocab: list[tuple[str, float, int]] = [
        ("<unk>", 0.0, TokenType.UNKNOWN),
        ("<s>", 0.0, TokenType.CONTROL),
        ("</s>", 0.0, TokenType.CONTROL),
    ]
    vocab += [(f"<0x{b:02X}>", 0.0, TokenType.BYTE) for b in range(256)]
    vocab += [(piece, -float(i), TokenType.NORMAL) for i, piece in enumerate(_PIECES)]
    return vocab


@dataclass(frozen=True)
class TinyLlamaConfig:
    """Sizes of a tiny llama; defaults build in milliseconds and quantise to Q8_0/Q4_0 (rows of 32k)."""

    n_layers: int = 2
    """Transformer blocks."""
    d_model: int = 64
    """Residual width (hidden_size)."""
    n_heads: int = 4
    """Attention heads."""
    n_kv_heads: int = 2
    """Key/value heads (grouped-query attention when < n_heads)."""
    d_ff: int = 128
    """MLP width (intermediate_size)."""
    context_length: int = 128
    """max_position_embeddings."""
    rms_norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    tie_word_embeddings: bool = False
    """Reuse the embedding as output head (no lm_head / output.weight tensor)."""

    def __post_init__(self) -> None:
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {self.n_layers}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"d_model ({self.d_model}) must split into n_heads ({self.n_heads}) heads of even size (RoPE)"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def vocab_size(self) -> int:
        return len(tiny_vocab())


def llama_weights(config: TinyLlamaConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights under Hugging Face names, PyTorch shapes, in save_pretrained order."""
    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(config.d_model)).astype(np.float32)

    d, hd = config.d_model, config.head_dim
    weights = {"model.embed_tokens.weight": matrix(config.vocab_size, d)}
    for i in range(config.n_layers):
        p = f"model.layers.{i}."
        weights[p + "input_layernorm.weight"] = norm()
        weights[p + "self_attn.q_proj.weight"] = matrix(config.n_heads * hd, d)
        weights[p + "self_attn.k_proj.weight"] = matrix(config.n_kv_heads * hd, d)
        weights[p + "self_attn.v_proj.weight"] = matrix(config.n_kv_heads * hd, d)
        weights[p + "self_attn.o_proj.weight"] = matrix(d, config.n_heads * hd)
        weights[p + "post_attention_layernorm.weight"] = norm()
        weights[p + "mlp.gate_proj.weight"] = matrix(config.d_ff, d)
        weights[p + "mlp.up_proj.weight"] = matrix(config.d_ff, d)
        weights[p + "mlp.down_proj.weight"] = matrix(d, config.d_ff)
    weights["model.norm.weight"] = norm()
    if not config.tie_word_embeddings:
        weights["lm_head.weight"] = matrix(config.vocab_size, d)
    return weights


def hf_to_gguf_name(name: str) -> str:
    """llama.cpp's name for a Hugging Face llama tensor name."""
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if name in fixed:
        return fixed[name]
    parts = name.split(".")  # model.layers.N.<module path>.weight
    layer, module = parts[2], ".".join(parts[3:-1])
    stem = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }[module]
    return f"blk.{layer}.{stem}.{parts[-1]}"


def permute_for_llama_cpp(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder Q/K rows from Hugging Face's rotate-half RoPE layout to llama.cpp's interleaved one."""
    return (
        weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def gguf_tensors(config: TinyLlamaConfig, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The float32 tensors a GGUF of these weights holds, under GGUF names (before quantisation)."""
    out: dict[str, np.ndarray] = {}
    for name, weight in weights.items():
        if name.endswith("self_attn.q_proj.weight"):
            weight = permute_for_llama_cpp(weight, config.n_heads)
        elif name.endswith("self_attn.k_proj.weight"):
            weight = permute_for_llama_cpp(weight, config.n_kv_heads)
        out[hf_to_gguf_name(name)] = weight
    return out


def write_gguf_llama(
    path: Path,
    config: TinyLlamaConfig,
    weights: dict[str, np.ndarray] | None = None,
    *,
    tensor_type: str = "F32",
    architecture: str = "llama",
    name: str = "tiny-llama",
    chat_template: str | None = TINY_CHAT_TEMPLATE,
    seed: int = 0,
) -> Path:
    """Write a llama GGUF; 2-D tensors in ``tensor_type`` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), 1-D F32.

    ``architecture`` only changes ``general.architecture`` and the metadata key prefix (the tensors
    stay llama's): enough to test how an unsupported architecture is reported.
    """
    weights = llama_weights(config, seed) if weights is None else weights
    qtype = GGMLQuantizationType[tensor_type]
    file_type = LlamaFileType.ALL_F32 if qtype == GGMLQuantizationType.F32 else LlamaFileType[f"MOSTLY_{tensor_type}"]
    writer = GGUFWriter(path, architecture)
    writer.add_name(name)
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(config.d_model)
    writer.add_block_count(config.n_layers)
    writer.add_feed_forward_length(config.d_ff)
    writer.add_head_count(config.n_heads)
    writer.add_head_count_kv(config.n_kv_heads)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(int(file_type))
    vocab = tiny_vocab()
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([piece for piece, _, _ in vocab])
    writer.add_token_scores([score for _, score, _ in vocab])
    writer.add_token_types([int(kind) for _, _, kind in vocab])
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for tensor_name, tensor in gguf_tensors(config, weights).items():
        if tensor.ndim == 1 or qtype == GGMLQuantizationType.F32:
            writer.add_tensor(tensor_name, tensor.astype(np.float32))
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(tensor_name, tensor.astype(np.float16))
        else:  # BF16 and block quantisations: bytes from gguf.quants, logical shape from raw_dtype
            writer.add_tensor(tensor_name, quantize(tensor, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def hf_config(
    config: TinyLlamaConfig,
    *,
    architecture: str = "LlamaForCausalLM",
    model_type: str = "llama",
    torch_dtype: str = "float32",
) -> dict:
    """config.json as transformers writes it for a LlamaForCausalLM."""
    return {
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "vocab_size": config.vocab_size,
        "tie_word_embeddings": config.tie_word_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "torch_dtype": torch_dtype,
        "transformers_version": "4.46.0",
    }


def _tokenizer_json() -> dict:
    """A Llama-2-style tokenizer.json (BPE with byte fallback) for :func:`tiny_vocab`."""
    vocab = tiny_vocab()
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": piece,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, piece in enumerate(SPECIAL_TOKENS)
        ],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            ],
        },
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS_ID], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": {piece: i for i, (piece, _, _) in enumerate(vocab)},
            "merges": list(_MERGES),
        },
    }


def write_tokenizer_files(
    folder: Path, config: TinyLlamaConfig, *, chat_template: str | None = TINY_CHAT_TEMPLATE
) -> None:
    """tokenizer.json, tokenizer_config.json (with the chat template), special_tokens_map.json."""
    tokenizer_config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "model_max_length": config.context_length,
        "tokenizer_class": "LlamaTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "legacy": False,
    }
    if chat_template is not None:
        tokenizer_config["chat_template"] = chat_template
    _write_json(folder / "tokenizer.json", _tokenizer_json())
    _write_json(folder / "tokenizer_config.json", tokenizer_config)
    _write_json(folder / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})


def write_hf_llama(
    folder: Path,
    config: TinyLlamaConfig,
    weights: dict[str, np.ndarray] | None = None,
    *,
    shards: int = 2,
    dtype: type[np.floating] = np.float32,
    architecture: str = "LlamaForCausalLM",
    model_type: str = "llama",
    seed: int = 0,
) -> Path:
    """Write a Hugging Face folder: config.json, tokenizer files, weights and (for shards > 1) the index.

    Tensors are split into ``shards`` files of roughly equal size, named as save_pretrained names
    them (``model-00001-of-00002.safetensors``); ``shards=1`` writes ``model.safetensors`` alone.
    """
    weights = llama_weights(config, seed) if weights is None else weights
    if not 1 <= shards <= len(weights):
        raise ValueError(f"shards must be between 1 and {len(weights)}, got {shards}")
    folder.mkdir(parents=True, exist_ok=True)
    torch_dtype = {np.float32: "float32", np.float16: "float16"}[dtype]
    _write_json(
        folder / "config.json",
        hf_config(config, architecture=architecture, model_type=model_type, torch_dtype=torch_dtype),
    )
    _write_json(folder / "generation_config.json", {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID})
    write_tokenizer_files(folder, config)

    arrays = {name: np.ascontiguousarray(w.astype(dtype)) for name, w in weights.items()}
    if shards == 1:
        save_file(arrays, folder / "model.safetensors", metadata={"format": "pt"})
        return folder
    # Greedy split in save order so each shard holds about total/shards bytes.
    total = sum(a.nbytes for a in arrays.values())
    groups: list[dict[str, np.ndarray]] = [{} for _ in range(shards)]
    written = 0
    for name, array in arrays.items():
        index = min(shards - 1, written * shards // total)
        groups[index][name] = array
        written += array.nbytes
    groups = [g for g in groups if g]
    weight_map: dict[str, str] = {}
    for i, group in enumerate(groups, start=1):
        shard_name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file(group, folder / shard_name, metadata={"format": "pt"})
        weight_map.update({name: shard_name for name in group})
    _write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    return folder


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
