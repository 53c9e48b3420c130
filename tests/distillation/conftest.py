"""Fixtures of the distillation app's tests: a tiny real llama teacher (Hugging Face, with a tokenizer), a domain
dataset and a control dataset."""

from __future__ import annotations

import io
import json

import pytest

from projects import blobs
from projects.actions import teachers as teacher_actions
from projects.models import Dataset
from tests.support.tiny_models import TinyLlamaConfig, write_hf_llama

DOMAIN = "the heart pumps blood through arteries and veins while the lungs bring oxygen to it".split()
CONTROL = "a python function returns a value and a class defines methods for its objects".split()


def make_dataset(actors, name: str, words: list[str], role: str, n: int = 80) -> Dataset:
    lines = [
        json.dumps({"id": i, "text": "Question: what is " + " ".join(words[(i + j) % len(words)] for j in range(6))
                    + "?\\nAnswer: " + " ".join(words[(i + j) % len(words)] for j in range(30))})
        for i in range(n)
    ]  # fmt: skip
    documents = blobs.store_stream(io.BytesIO(("\n".join(lines) + "\n").encode()))
    return Dataset.objects.create(
        organization=actors.org, project=actors.project, name=name, format="jsonl", role=role, status="ready",
        source_blob=documents, documents_blob=documents, document_count=n, split_ratio=0.8,
    )  # fmt: skip


@pytest.fixture
def teacher(actors, tmp_path):
    config = TinyLlamaConfig(n_layers=4, d_model=64, n_heads=4, n_kv_heads=2, d_ff=256)
    folder = write_hf_llama(tmp_path / "tiny-hf", config, seed=3)
    return teacher_actions.do_import_model_files(folder, actors.project, actors.owner, name="tiny teacher")


@pytest.fixture
def domain(actors):
    return make_dataset(actors, "cardiology notes", DOMAIN, "domain")


@pytest.fixture
def control(actors):
    return make_dataset(actors, "python docs", CONTROL, "control")
