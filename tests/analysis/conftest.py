"""Fixtures of the analysis app's tests: a tiny real llama teacher (Hugging Face) and a small domain dataset."""

from __future__ import annotations

import io
import json

import pytest

from projects import blobs
from projects.actions import teachers as teacher_actions
from projects.models import Dataset
from tests.support.tiny_models import TinyLlamaConfig, write_hf_llama

WORDS = "the heart pumps blood through arteries and veins while the lungs bring oxygen to it".split()


@pytest.fixture
def teacher(actors, tmp_path):
    config = TinyLlamaConfig(n_layers=3, d_model=32, n_heads=4, n_kv_heads=2, d_ff=64)
    folder = write_hf_llama(tmp_path / "tiny-hf", config, seed=3)
    return teacher_actions.do_import_model_files(folder, actors.project, actors.owner, name="tiny teacher")


@pytest.fixture
def dataset(actors):
    lines = [
        json.dumps({"id": i, "text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(30)), "source": f"line {i}"})
        for i in range(60)
    ]
    documents = blobs.store_stream(io.BytesIO(("\n".join(lines) + "\n").encode()))
    return Dataset.objects.create(
        organization=actors.org,
        project=actors.project,
        name="cardiology notes",
        format="jsonl",
        status="ready",
        source_blob=documents,
        documents_blob=documents,
        document_count=60,
        split_ratio=0.9,
    )
