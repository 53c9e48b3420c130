"""Loading a teacher in torch for the analysis and distillation jobs: its Hugging Face copy, its tokenizer,
the token ids of a dataset split.

Workers only (imports torch and transformers); never imported by a page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from projects import blobs
from projects.actions import ActionError
from projects.actions import teachers as teacher_actions
from projects.engine.datasets import read_documents
from projects.models import Dataset, LanguageModel

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel


def device() -> torch.device:
    """CUDA when a GPU is present, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_teacher(model: LanguageModel) -> tuple[PreTrainedModel, Tokenizer, Path]:
    """The model in torch (float32 on CPU, float16 on a GPU), its tokenizer and its folder."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    folder = teacher_actions.model_folder(model)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.exists():
        raise ActionError(f"{model.name} has no tokenizer.json; upload the model folder with its tokenizer files.")
    target = device()
    dtype = torch.float16 if target.type == "cuda" else torch.float32
    if target.type == "cuda":
        # accelerate offloads what does not fit the GPU to the CPU (the consumer-hardware case).
        torch_model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=dtype, device_map="auto", local_files_only=True
        )
    else:
        torch_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    torch_model.eval()
    return torch_model, Tokenizer.from_file(str(tokenizer_file)), folder


def dataset_token_ids(dataset: Dataset, tokenizer: Tokenizer, split: str | None) -> Iterator[list[int]]:
    """Token ids of each document of ``dataset``'s ``split`` (None: every document), streamed."""
    if dataset.documents_blob is None:
        raise ActionError(f"The dataset {dataset.name} has no documents yet.")
    path = blobs.local_path(dataset.documents_blob)
    for record in read_documents(path, split=split, seed=dataset.split_seed, ratio=dataset.split_ratio):
        ids = tokenizer.encode(record["text"], add_special_tokens=False).ids
        if ids:
            yield ids
