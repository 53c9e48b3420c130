"""Fixtures of the analysis engine tests."""

from __future__ import annotations

import pytest
import torch
import transformers

from tests.analysis.engine.support import documents, tiny_llama


@pytest.fixture(scope="module")
def model() -> transformers.LlamaForCausalLM:
    torch.set_num_threads(1)
    return tiny_llama()


@pytest.fixture
def docs() -> list[list[int]]:
    return documents()
