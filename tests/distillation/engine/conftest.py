"""Tiny real llama models for the distillation engine's tests."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distillation.engine.importance import windows


def tiny_llama(seed: int = 0, *, layers: int = 4, heads: int = 4, kv_heads: int = 2, hidden: int = 64,
               intermediate: int = 128, vocab: int = 96, tied: bool = True) -> LlamaForCausalLM:  # fmt: skip
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128,
        tie_word_embeddings=tied,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def model() -> LlamaForCausalLM:
    return tiny_llama()


@pytest.fixture
def token_windows() -> list[list[int]]:
    rng = random.Random(0)
    documents = [[rng.randrange(96) for _ in range(80)] for _ in range(16)]
    return list(windows(documents, 32, 32 * 24))
