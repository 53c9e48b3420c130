"""Train EleutherAI sparsify's coders on CPU, with the teacher's forward pass in the loop (run by bench/analysis.py).

Runs with the python of a separate virtual environment holding ``eai-sparsify`` (never the project's: the
project's environment never imports sparsify). Usage::

    <sparsify-venv>/bin/python bench/_sparsify_driver.py job.json

``job.json`` names the Hugging Face model folder, a ``.npy`` file of token ids ``(n_sequences, seq_len)``
(int32, already in training order: sparsify does not shuffle), the hook points, the coder settings and an
output folder. The driver drives sparsify's Python API as its CLI would (``sparsify/__main__.py``: a
``TrainConfig`` and ``Trainer(cfg, dataset, model).fit()``), but on the CPU and without Weights & Biases,
then writes ``result.json`` into the output folder: timings, versions, the config and where sparsify saved
each coder (``<hookpoint>/sae.safetensors`` + ``cfg.json``). Evaluation happens in the project's
environment with the project's metric code.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # no triton on a CPU-only torch: the eager decoder
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def rss_peak_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reference_outputs(model, ids, coders: dict, n_tokens: int, transcode: bool) -> dict:
    """sparsify's own outputs of the saved coders on the first ``n_tokens`` training tokens (to check a port).

    ``{"L<i>.x": coder input, "L<i>.y": coder output}`` per hook point ``layers.<i>.mlp``.
    """
    import torch
    from sparsify import SparseCoder

    rows = max(1, n_tokens // ids.shape[1])
    x = torch.as_tensor(ids[:rows], dtype=torch.long)
    seen = {}
    handles = []
    for hook in coders:
        module = model.base_model.get_submodule(hook)

        def record(mod, args, output, hook=hook):
            seen[hook] = (args[0].flatten(0, 1).detach().clone(), output.flatten(0, 1).detach().clone())

        handles.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    out = {}
    for hook, path in coders.items():
        coder = SparseCoder.load_from_disk(path)
        mlp_in, mlp_out = seen[hook]
        source = mlp_in if transcode else mlp_out
        with torch.no_grad():
            y = coder(source).sae_out
        layer = hook.split(".")[1]
        out[f"L{layer}.x"] = source.contiguous()
        out[f"L{layer}.y"] = y.float().contiguous()
    return out


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    import numpy as np
    import sparsify
    import torch
    from datasets import Dataset
    from safetensors.torch import save_file
    from sparsify import SparseCoderConfig, TrainConfig, Trainer
    from transformers import AutoModelForCausalLM

    imported = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(job["model_dir"], dtype=torch.float32, local_files_only=True)
    model.eval()
    loaded = time.perf_counter()

    ids = np.load(job["tokens"])
    dataset = Dataset.from_dict({"input_ids": ids.astype(np.int64)}).with_format("torch")
    coder = SparseCoderConfig(
        expansion_factor=job["expansion"],
        k=job["k"],
        transcode=job["transcode"],
        skip_connection=job["skip_connection"],
    )
    cfg = TrainConfig(
        coder,
        batch_size=job["batch_size"],
        hookpoints=list(job["hookpoints"]),
        log_to_wandb=False,
        save_dir=str(out / "checkpoints"),
        run_name="run",
        save_every=10**9,  # only the final save (fit() always saves at the end)
        **job.get("train_overrides", {}),
    )
    trainer = Trainer(cfg, dataset, model)
    ready = time.perf_counter()
    cpu = time.process_time()
    trainer.fit()
    fitted = time.perf_counter()
    fit_cpu = time.process_time() - cpu

    run_dir = out / "checkpoints" / "run"
    coders = {hook: str(run_dir / hook) for hook in cfg.hookpoints}
    check = reference_outputs(model, ids, coders, job.get("check_tokens", 512), transcode=job["transcode"])
    save_file(check, str(out / "check.safetensors"))
    result = {
        "sparsify_version": sparsify.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers_version": __import__("transformers").__version__,
        "python": sys.version.split()[0],
        "train_config": json.loads(json.dumps(asdict(cfg), default=str)),
        "n_sequences": int(ids.shape[0]),
        "seq_len": int(ids.shape[1]),
        "tokens": int(ids.size),
        "steps": int(trainer.global_step),
        "optimizer": cfg.optimizer,
        "learning_rates": [g.get("lr") for opt in trainer.optimizers for g in getattr(opt, "param_groups", [])],
        "import_s": round(imported - started, 3),
        "model_load_s": round(loaded - imported, 3),
        "trainer_setup_s": round(ready - loaded, 3),
        "fit_s": round(fitted - ready, 3),
        "fit_cpu_s": round(fit_cpu, 3),
        "tokens_per_second": round(ids.size / max(fitted - ready, 1e-9), 2),
        "peak_rss_mib": rss_peak_mib(),
        "coders": coders,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"result": str(out / "result.json"), "fit_s": result["fit_s"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
