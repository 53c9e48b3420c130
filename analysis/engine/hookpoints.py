"""Hook points: module-name patterns over ``model.named_modules()`` resolved to the modules they name.

Captures, metrics and feature runs address the teacher's MLPs by patterns stored as strings
(``model.layers.*.mlp``), so a row in the database says what was hooked without pickling anything.
Only the llama architecture (Llama, SmolLM2, Mistral-style checkpoints whose ``config.model_type``
is ``llama``) is supported: its MLP input is the output of ``post_attention_layernorm`` and its MLP
output is what the block adds to the residual stream, which is what transcoders are trained on.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

from torch import nn

SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama",)
"""``config.model_type`` values the analysis engine knows how to take apart."""

DEFAULT_MLP_PATTERN = "model.layers.*.mlp"
"""Every decoder block's MLP of a Hugging Face ``LlamaForCausalLM``."""

_MLP_NAME = re.compile(r"^(?:.*\.)?layers\.(\d+)\.mlp$")


class HookpointError(ValueError):
    """A hook-point pattern that cannot be used (matches nothing, or names something that is not an MLP)."""


class UnsupportedModelError(ValueError):
    """The model's architecture is not one the analysis engine supports."""


def model_architecture(model: nn.Module) -> str:
    """``config.model_type`` of a Hugging Face model (``"unknown"`` for a module without a config)."""
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", None) or "unknown")


def require_supported(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModelError` unless ``model`` is one of ``SUPPORTED_ARCHITECTURES``."""
    arch = model_architecture(model)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"model architecture {arch!r} ({type(model).__name__}) is not supported yet; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )


def resolve_hookpoints(model: nn.Module, patterns: str | Sequence[str]) -> list[str]:
    """Module names matching any of ``patterns`` (fnmatch), in ``named_modules()`` order, each once.

    Raises :class:`HookpointError` for an empty pattern list or for any pattern that matches no module,
    naming a few module names the pattern could have meant.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    patterns = [p.strip() for p in patterns]
    if not patterns or any(not p for p in patterns):
        raise HookpointError("no hook-point pattern given; use e.g. 'model.layers.*.mlp'")
    names = [name for name, _ in model.named_modules() if name]
    matched: dict[str, None] = {}
    for pattern in patterns:
        hits = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            hint = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
            raise HookpointError(
                f"hook-point pattern {pattern!r} matches no module of {type(model).__name__}; "
                f"module names look like: {hint}"
            )
        for name in hits:
            matched[name] = None
    order = {name: i for i, name in enumerate(names)}
    return sorted(matched, key=order.__getitem__)


def mlp_layer_index(name: str) -> int:
    """Decoder-block index of an MLP module name (``model.layers.7.mlp`` → 7); :class:`HookpointError` otherwise."""
    match = _MLP_NAME.match(name)
    if match is None:
        raise HookpointError(
            f"module {name!r} is not a decoder block's MLP; captures record MLP inputs and outputs, "
            "so patterns must name modules like 'model.layers.3.mlp' (use 'model.layers.*.mlp' for all)"
        )
    return int(match.group(1))


def resolve_mlp_hookpoints(model: nn.Module, patterns: str | Sequence[str] = DEFAULT_MLP_PATTERN) -> dict[int, str]:
    """``{layer index: module name}`` of the MLPs ``patterns`` select on a supported model, by layer.

    The model's architecture is checked first (:class:`UnsupportedModelError`), then every match must be
    a block's MLP (:class:`HookpointError`), so ``model.layers.*`` (which also matches attention and
    norms) is refused with a message saying what to write instead.
    """
    require_supported(model)
    names = resolve_hookpoints(model, patterns)
    layers: dict[int, str] = {}
    for name in names:
        layers[mlp_layer_index(name)] = name
    return dict(sorted(layers.items()))


def mlp_modules(model: nn.Module, layers: Sequence[int] | None = None) -> dict[int, nn.Module]:
    """``{layer: MLP module}`` for ``layers`` (all blocks when None) of a supported model."""
    hookpoints = resolve_mlp_hookpoints(model)
    if layers is not None:
        missing = sorted(set(layers) - set(hookpoints))
        if missing:
            raise HookpointError(f"layers {missing} do not exist; the model has layers 0..{len(hookpoints) - 1}")
        hookpoints = {layer: hookpoints[layer] for layer in sorted(set(layers))}
    return {layer: model.get_submodule(name) for layer, name in hookpoints.items()}
