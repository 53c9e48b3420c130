"""Model families the distillation engine can take apart: where a family keeps its layers, attention and MLP.

Only the llama family (Hugging Face ``LlamaForCausalLM``: SmolLM2, TinyLlama, Llama 2/3) is supported; another
family is added by writing its :class:`TeacherArch` reading and its module paths here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

SUPPORTED = ("LlamaForCausalLM",)


class UnsupportedArchitecture(ValueError):
    """A teacher of a family the engine cannot prune yet."""


@dataclass(frozen=True)
class TeacherArch:
    """The shape of a llama-family model: what recipes are validated against."""

    layers: int
    heads: int
    kv_heads: int
    hidden: int
    intermediate: int
    vocab: int
    head_dim: int
    tied_embeddings: bool = True

    @property
    def group_size(self) -> int:
        """Query heads per KV group."""
        return self.heads // self.kv_heads

    @property
    def params(self) -> int:
        return parameter_count(self, [self.kv_heads] * self.layers, [self.intermediate] * self.layers)

    @classmethod
    def from_config(cls, config: Any) -> TeacherArch:
        architectures = list(getattr(config, "architectures", None) or [])
        model_type = getattr(config, "model_type", "")
        if model_type != "llama" and not set(architectures) & set(SUPPORTED):
            raise UnsupportedArchitecture(
                f"not supported yet: {', '.join(architectures) or model_type or 'unknown architecture'}; "
                f"supported: llama ({', '.join(SUPPORTED)})"
            )
        heads = int(config.num_attention_heads)
        return cls(
            layers=int(config.num_hidden_layers),
            heads=heads,
            kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            hidden=int(config.hidden_size),
            intermediate=int(config.intermediate_size),
            vocab=int(config.vocab_size),
            head_dim=int(getattr(config, "head_dim", None) or config.hidden_size // heads),
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "params": self.params}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TeacherArch:
        names = cls.__dataclass_fields__
        missing = [n for n in names if n not in data and n != "tied_embeddings"]
        if missing:
            raise ValueError(f"the teacher's shape lacks {', '.join(missing)}")
        return cls(**{n: data[n] for n in names if n in data})


def parameter_count(arch: TeacherArch, kv_groups: list[int], widths: list[int]) -> int:
    """Parameters of a llama model with ``len(widths)`` layers, ``kv_groups[i]`` KV groups and MLP width
    ``widths[i]`` in layer ``i`` (embeddings, the output head unless tied, norms included)."""
    embeddings = arch.vocab * arch.hidden * (1 if arch.tied_embeddings else 2)
    total = embeddings + arch.hidden  # the final norm
    for groups, width in zip(kv_groups, widths, strict=True):
        q_heads = groups * arch.group_size
        attention = arch.hidden * arch.head_dim * (2 * q_heads + 2 * groups)  # q, o; k, v
        total += attention + 3 * arch.hidden * width + 2 * arch.hidden
    return total


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a llama-family model, in order."""
    return model.model.layers


def check_supported(model: nn.Module) -> TeacherArch:
    """The model's shape, or :class:`UnsupportedArchitecture` saying what it is."""
    return TeacherArch.from_config(model.config)
