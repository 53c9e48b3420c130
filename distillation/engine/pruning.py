"""Structured pruning of a llama model by a recipe: a genuinely smaller ``LlamaForCausalLM``.

The Hugging Face tensors are sliced directly (no library internals): dropped layers are left out and the rest
renumbered; for each kept layer, the kept KV groups keep their ``k_proj`` / ``v_proj`` rows and their query heads
their ``q_proj`` rows and ``o_proj`` columns; the kept MLP neurons keep their ``gate_proj`` / ``up_proj`` rows and
``down_proj`` columns. The config says the new shape (``head_dim`` explicit, since ``hidden / heads`` no longer
gives it). With ``wanda_sparsity``, the lowest-scoring weights of each remaining linear layer are then zeroed
(unstructured; the file does not shrink).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from .families import TeacherArch, check_supported, decoder_layers
from .recipes import Recipe, validate


class PruningError(ValueError):
    """A recipe that does not fit the model."""


def pruned_config(config: LlamaConfig, recipe: Recipe) -> LlamaConfig:
    arch = TeacherArch.from_config(config)
    new = copy.deepcopy(config)
    new.num_hidden_layers = len(recipe.layers_kept)
    new.num_key_value_heads = recipe.kv_groups
    new.num_attention_heads = recipe.kv_groups * arch.group_size
    new.intermediate_size = recipe.width
    new.head_dim = arch.head_dim
    if getattr(new, "layer_types", None):
        new.layer_types = [config.layer_types[i] for i in recipe.layers_kept]
    return new


def _heads(groups: list[int], group_size: int) -> list[int]:
    return [g * group_size + j for g in groups for j in range(group_size)]


def _rows(blocks: list[int], size: int) -> torch.Tensor:
    return torch.tensor([b * size + i for b in blocks for i in range(size)], dtype=torch.long)


@torch.no_grad()
def prune(model: LlamaForCausalLM, recipe: Recipe) -> LlamaForCausalLM:
    """A new, smaller model that keeps what ``recipe`` keeps of ``model`` (left unchanged)."""
    arch = check_supported(model)
    problems = validate(recipe, arch)
    if problems:
        raise PruningError("; ".join(problems))
    config = pruned_config(model.config, recipe)
    d = arch.head_dim
    source = model.state_dict()
    target: dict[str, torch.Tensor] = {}
    for name, tensor in source.items():
        if not name.startswith("model.layers."):
            target[name] = tensor.clone()
    for new_index, (old_index, groups, neurons) in enumerate(
        zip(recipe.layers_kept, recipe.kv_groups_kept, recipe.mlp_neurons_kept, strict=True)
    ):
        old, new = f"model.layers.{old_index}.", f"model.layers.{new_index}."
        q_rows = _rows(_heads(sorted(groups), arch.group_size), d)
        kv_rows = _rows(sorted(groups), d)
        keep = torch.tensor(sorted(neurons), dtype=torch.long)
        for key, tensor in source.items():
            if not key.startswith(old):
                continue
            rest = key[len(old) :]
            if rest in ("self_attn.q_proj.weight", "self_attn.q_proj.bias"):
                value = tensor.index_select(0, q_rows)
            elif rest.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                value = tensor.index_select(0, kv_rows)
            elif rest == "self_attn.o_proj.weight":
                value = tensor.index_select(1, q_rows)
            elif rest.startswith(("mlp.gate_proj.", "mlp.up_proj.")):
                value = tensor.index_select(0, keep)
            elif rest == "mlp.down_proj.weight":
                value = tensor.index_select(1, keep)
            else:
                value = tensor
            target[new + rest] = value.clone()
    student = LlamaForCausalLM(config).to(dtype=next(model.parameters()).dtype)
    missing, unexpected = student.load_state_dict(target, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise PruningError(
            f"the pruned weights do not fit the new shape: missing {missing[:4]}, extra {unexpected[:4]}"
        )
    if config.tie_word_embeddings:
        student.tie_weights()
    student.eval()
    return student


@torch.no_grad()
def wanda_sparsify(model: nn.Module, input_norms: dict[str, torch.Tensor], sparsity: float) -> int:
    """Zero, in each linear layer of the decoder blocks named in ``input_norms`` (its input's per-feature L2
    norm over calibration tokens), the ``sparsity`` fraction of each output row's weights with the lowest
    ``|W_ij|·‖X_j‖`` (Wanda). Returns how many weights were zeroed. The tensors keep their shape."""
    zeroed = 0
    modules = dict(model.named_modules())
    for name, norms in input_norms.items():
        linear = modules[name]
        scores = linear.weight.abs() * norms.to(linear.weight.device, linear.weight.dtype).unsqueeze(0)
        k = int(scores.shape[1] * sparsity)
        if k == 0:
            continue
        _, lowest = scores.topk(k, dim=1, largest=False)
        linear.weight.scatter_(1, lowest, 0.0)
        zeroed += lowest.numel()
    return zeroed


@torch.no_grad()
def linear_input_norms(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The per-feature L2 norm of every decoder linear layer's input over ``batches`` (Wanda's ``‖X_j‖``)."""
    sums: dict[str, torch.Tensor] = {}
    handles = []
    for index, layer in enumerate(decoder_layers(model)):
        for name, module in layer.named_modules():
            if isinstance(module, nn.Linear):
                full = f"model.layers.{index}.{name}"

                def hook(mod: nn.Module, args: tuple, full: str = full) -> None:
                    x = args[0].float().reshape(-1, args[0].shape[-1])
                    sums[full] = sums.get(full, 0) + (x * x).sum(0).cpu()

                handles.append(module.register_forward_pre_hook(hook))
    try:
        for batch in batches:
            model(input_ids=batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: total.sqrt() for name, total in sums.items()}
