"""Helpers of the analysis engine tests: a tiny llama built in the test, and token documents."""

from __future__ import annotations

import random

import torch
import transformers

VOCAB = 300


def tiny_llama(seed: int = 0, n_layers: int = 3) -> transformers.LlamaForCausalLM:
    """A 3-layer llama, 32 wide, random weights fixed by ``seed`` (float32, CPU, eval mode)."""
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    # Random norm weights, so that a test mixing up "before" and "after" the norm fails.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model.eval()


def documents(n_docs: int = 12, seed: int = 1, lo: int = 3, hi: int = 40) -> list[list[int]]:
    """Token-id documents of random lengths (``lo``..``hi``)."""
    rng = random.Random(seed)
    return [[rng.randrange(3, VOCAB) for _ in range(rng.randint(lo, hi))] for _ in range(n_docs)]
