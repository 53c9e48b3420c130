"""Measuring a student beside its teacher and the baselines: perplexity (torch, and the shipped GGUF through
llama.cpp), speed in llama.cpp, the specialisation index, and answers to domain questions side by side."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def torch_perplexity(model: nn.Module, windows: Sequence[Sequence[int]], batch_size: int = 4) -> float:
    """exp of the mean next-token cross-entropy of ``model`` over ``windows``."""
    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    ids = torch.tensor([list(w) for w in windows], dtype=torch.long)
    for batch in ids.split(batch_size):
        batch = batch.to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
        total += float(nll)
        count += batch[:, 1:].numel()
    return math.exp(total / max(count, 1))


def _llama(path: str | Path, n_ctx: int, threads: int | None, logits_all: bool = True) -> object:
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=logits_all, n_threads=threads,
                 verbose=False)  # fmt: skip


def gguf_perplexity(path: str | Path, windows: Sequence[Sequence[int]], threads: int | None = None) -> float:
    """Perplexity of a GGUF file over ``windows`` (token ids of the same tokenizer), computed by llama.cpp."""
    seq_len = max(len(w) for w in windows)
    llm = _llama(path, seq_len, threads)
    total, count = 0.0, 0
    for window in windows:
        llm.reset()
        llm.eval(list(window))
        logits = np.asarray(llm.scores[: len(window) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= float(logprobs[np.arange(len(window) - 1), np.asarray(window[1:])].sum())
        count += len(window) - 1
    return math.exp(total / max(count, 1))


@dataclass
class Speed:
    prefill_tokens_per_second: float
    decode_tokens_per_second: float


def gguf_speed(path: str | Path, prompt: Sequence[int], decode_tokens: int = 64, threads: int | None = None,
               repeats: int = 3) -> Speed:  # fmt: skip
    """Prefill and greedy decode speed of a GGUF in llama.cpp on this machine: the median of ``repeats`` runs
    after one warm-up run (the first run pays for paging the weights in)."""
    llm = _llama(path, len(prompt) + decode_tokens + 8, threads, logits_all=False)
    prefills, decodes = [], []
    for _ in range(repeats + 1):
        llm.reset()
        started = time.perf_counter()
        llm.eval(list(prompt))
        prefills.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(decode_tokens):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([token])
        decodes.append(time.perf_counter() - started)
    prefill, decode = float(np.median(prefills[1:])), float(np.median(decodes[1:]))
    return Speed(len(prompt) / max(prefill, 1e-9), decode_tokens / max(decode, 1e-9))


def answer(path: str | Path, question: str, max_tokens: int = 96, system: str | None = None) -> str:
    """A greedy answer to ``question`` with the GGUF's own chat template."""
    llm = _llama(path, 1024, None, logits_all=False)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    result = llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=max_tokens, seed=0)
    return (result["choices"][0]["message"]["content"] or "").strip()


def specialisation_index(teacher_domain: float, teacher_control: float, student_domain: float,
                         student_control: float) -> float:  # fmt: skip
    """How much more the student lost off-domain than on its domain: control perplexity growth ÷ domain perplexity
    growth (growth = student ÷ teacher). Above 1: it kept the domain better than the rest."""
    return (student_control / teacher_control) / (student_domain / teacher_domain)


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
