"""Writing a student: the GGUF from llama.cpp's converter loads in llama.cpp and matches torch, quantized files
load and report the types they really use, and a full disk gives a clear error with nothing half-written."""

from __future__ import annotations

import errno
import random

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from distillation.engine.evaluation import (
    answer,
    gguf_perplexity,
    gguf_speed,
    specialisation_index,
    torch_perplexity,
)
from distillation.engine.export import ExportError, quantize, write_gguf, write_hf
from distillation.engine.importance import compute_importance, windows
from distillation.engine.pruning import prune
from distillation.engine.recipes import propose
from tests.support.tiny_models import TinyLlamaConfig, write_hf_llama


@pytest.fixture(scope="module")
def student(tmp_path_factory, llama_converter):
    """A pruned tiny llama (from a Hugging Face folder with a tokenizer), written as HF and as an f16 GGUF."""
    tmp = tmp_path_factory.mktemp("export")
    folder = write_hf_llama(tmp / "teacher", TinyLlamaConfig(n_layers=4, d_model=64, n_heads=4, n_kv_heads=2,
                                                             d_ff=256), seed=1)  # fmt: skip
    teacher = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rng = random.Random(0)
    docs = [[rng.randrange(3, teacher.config.vocab_size) for _ in range(100)] for _ in range(12)]
    wins = list(windows(docs, 32, 32 * 16))
    recipe = propose(compute_importance(teacher, iter(wins), sample_windows=2), targets=(0.55,))[0]
    pruned = prune(teacher, recipe)
    hf = write_hf(pruned, tmp / "student-hf", folder)
    gguf = write_gguf(hf, tmp / "student-f16.gguf", llama_converter)
    return pruned, hf, gguf, wins, tmp


def test_the_gguf_loads_in_llama_cpp_and_matches_torch(student):
    pruned, hf, gguf, wins, _ = student
    assert (hf / "tokenizer.json").is_file() and (hf / "model.safetensors").is_file()
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=64, logits_all=True, verbose=False)
    llm.eval(wins[0])
    ours = pruned(input_ids=torch.tensor([wins[0]])).logits[0].detach().numpy()
    assert np.abs(np.asarray(llm.scores[: len(wins[0])]) - ours).max() < 3e-3  # f16 weights
    assert gguf_perplexity(gguf, wins[:4]) == pytest.approx(torch_perplexity(pruned, wins[:4]), rel=1e-3)
    speed = gguf_speed(gguf, wins[0], decode_tokens=8)
    assert speed.prefill_tokens_per_second > 0 and speed.decode_tokens_per_second > 0
    assert isinstance(answer(gguf, "What does the heart do?", max_tokens=8), str)


def test_quantized_files_load_and_report_the_types_used(student):
    _, _, gguf, wins, tmp = student
    q8 = quantize(gguf, tmp / "student-q8_0.gguf", "Q8_0")
    assert q8.bytes < gguf.stat().st_size and q8.used.get("Q8_0", 0) > 0 and not q8.fallback
    assert gguf_perplexity(q8.path, wins[:2]) == pytest.approx(gguf_perplexity(gguf, wins[:2]), rel=0.05)
    q4 = quantize(gguf, tmp / "student-q4_k_m.gguf", "Q4_K_M")
    assert q4.fallback  # rows of 64 values: k-quants need 256, llama.cpp fell back (and we say so)
    assert "Q4_K" not in q4.used and q4.to_json()["used_summary"]
    assert not (tmp / "student-q4_k_m.gguf.partial").exists()


def test_a_full_disk_gives_a_clear_error_and_no_half_written_folder(student, tmp_path, monkeypatch):
    pruned, hf, *_ = student

    def disk_full(*args, **kwargs):  # what the OS raises when the disk fills (simulated: one cannot fill it here)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pruned, "save_pretrained", disk_full)
    with pytest.raises(ExportError, match="The disk is full while writing the Hugging Face checkpoint"):
        write_hf(pruned, tmp_path / "out", hf)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_an_unknown_type_is_refused_and_the_index_reads_growth():
    with pytest.raises(ExportError, match="Unknown quantization type Q9"):
        quantize("x.gguf", "y.gguf", "Q9")
    assert specialisation_index(10, 20, 15, 60) == pytest.approx(2.0)
