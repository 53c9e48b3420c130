"""Every layer in one run: capture all 30 MLPs of SmolLM2-135M, train 30 skip transcoders, export, release.

Issue #14's "every layer in one run": attribution graphs replace every MLP, so a capture and a training
run over all of the teacher's layers must fit this machine's disk and time. This script does what the
platform's jobs do, with the same engine calls, and measures it:

1. capture the MLP input and output of every layer (``model.layers.*.mlp``) over ``--tokens`` MedQuAD
   training tokens plus ``--held-out`` evaluation tokens, float16 shards (a child process, as in
   ``analysis.py``, for its memory high-water marks); the disk estimate the capture job shows, and the
   free disk before and after;
2. train one skip transcoder per layer, all 30 side by side in one pass over the shards (k 32,
   expansion 8, the engine's defaults), time and peak memory;
3. FVU / L0 / dead fraction per layer, KL and CE increase with each layer's MLP replaced alone, and
   with all 30 replaced at once (the replacement model an attribution graph runs);
4. export the set for circuit-tracer (one transcoder for every layer, its ``TranscoderSet`` layout);
5. delete the shards (what the capture page's "Release shards" does) and report the disk freed.

Which strategy this is: capture every layer, keep the shards until the run ends, train every layer in
one pass, then release. The disk must hold the whole capture (about 18 GB at 256k tokens) — it does
here. Training from the forward pass (``train_sparse_coders_online``) is the engine's other way, for
when it does not; it is not measured here.

    .venv/bin/python bench/analysis_every_layer.py            # 262,144 tokens, ~18 GB; 96 min on 2 busy cores
    .venv/bin/python bench/analysis_every_layer.py --smoke    # 8,192 tokens, a minute or two

Writes ``bench/results/analysis_every_layer.{json,md}`` (``--smoke``: under ``var/bench-cache/``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_analysis", ROOT / "bench" / "analysis.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # its helpers: the teacher, the tokens, stages, the capture child

from _machine import calibrate, describe  # noqa: E402  (bench/ is on the path after that import)

SEQ_LEN, TRAIN_BATCH, SEED = bench.SEQ_LEN, bench.TRAIN_BATCH, bench.SEED
log, Stage = bench.log, bench.Stage


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fmt_gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def make_markdown(result: dict) -> str:
    s, cap, tr, ex = result["settings"], result["capture"], result["training"], result["export"]
    lines = [
        "# Every layer in one run (issue #14)",
        "",
        f"Run {result['machine']['date_utc']} on {result['machine']['cpu']['model']} "
        f"({result['machine']['cpu']['logical_cores']} cores, {result['machine']['ram_gib']} GiB), "
        f"{result['total_minutes']:.1f} minutes in all. Teacher: SmolLM2-135M-Instruct (float32, CPU, "
        f"torch {result['torch']['version']}, {result['torch']['threads']} threads).",
        "",
        f"Strategy: **capture every layer ({s['n_layers']}), keep the shards for the run, train all "
        f"{s['n_layers']} skip transcoders side by side in one pass, export, then release the shards.**",
        "",
        f"Budget: {s['train_tokens']:,} training tokens per transcoder, {s['held_out_tokens']:,} held-out "
        f"tokens, sequences of {SEQ_LEN}, k = {s['k']}, expansion {s['expansion']} (d_sae = {s['d_sae']}), "
        f"{TRAIN_BATCH} tokens a step, {tr['steps']} steps.",
        "",
        "| stage | figure |",
        "| --- | --- |",
        f"| disk estimate shown before the capture | {fmt_gb(cap['estimated_bytes'])} |",
        f"| free disk before | {fmt_gb(cap['free_before'])} |",
        f"| capture | {cap['n_tokens']:,} tokens in {cap['capture_s']:.0f} s ({cap['tokens_per_second']:,.0f} "
        f"tokens/s), {cap['n_shards']} shards, {fmt_gb(cap['bytes'])}; peak RSS {cap['peak_mib']:,.0f} MiB |",
        f"| training | {s['n_layers']} skip transcoders, {tr['tokens']:,} tokens each in {tr['wall_s']:.0f} s "
        f"({tr['tokens_per_second']:,.0f} tokens/s per transcoder, {tr['coder_tokens_per_second']:,.0f} "
        f"transcoder-tokens/s); peak RSS {tr['peak_mib']:,.0f} MiB |",
        f"| metrics | {result['metrics_s']:.0f} s ({s['n_layers'] + 1} replacement passes over the held-out tokens) |",
        f"| circuit-tracer export | {ex['files']} files, {fmt_gb(ex['bytes'])}, {ex['seconds']:.1f} s |",
        f"| shards released | {fmt_gb(result['release']['freed_bytes'])} freed in "
        f"{result['release']['seconds']:.1f} s |",
        f"| end to end (capture + training + metrics + export) | {result['end_to_end_s'] / 60:.1f} min |",
        "",
        f"All {s['n_layers']} MLPs replaced at once (the replacement model): CE "
        f"{result['all_layers']['clean_ce']:.4f} → {result['all_layers']['replaced_ce']:.4f} nats "
        f"(+{result['all_layers']['ce_increase']:.4f}), KL {result['all_layers']['kl']:.4f} nats.",
        "",
        "| layer | FVU | L0 | dead | KL (nats) | CE increase (nats) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for layer, row in sorted(result["layers"].items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| {layer} | {row['fvu']:.4f} | {row['l0']:.1f} | {row['dead_fraction']:.4f} | {row['kl']:.4f} | "
            f"{row['ce_increase']:.4f} |"
        )
    lines += [
        "",
        "## Machine load",
        "",
        "| stage | wall s | our cores | other processes' cores |",
        "| --- | --- | --- | --- |",
    ]
    for name, st in result["stages"].items():
        lines.append(f"| {name} | {st['wall_s']:.0f} | {st['our_cores']} | {st['other_processes_cores']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=262_144, help="training tokens per transcoder")
    parser.add_argument("--held-out", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="8,192 tokens, 1,024 held out")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the shards are released anyway)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.tokens, args.held_out = 8192, 1024
    out = (
        Path(args.out)
        if args.out
        else (
            bench.CACHE / "analysis-every-layer-smoke.json"
            if args.smoke
            else ROOT / "bench/results/analysis_every_layer.json"
        )
    )
    n_train = args.tokens // SEQ_LEN * SEQ_LEN
    n_held = args.held_out // SEQ_LEN * SEQ_LEN
    total = n_train + n_held

    started = time.perf_counter()
    stages: dict = {}
    machine = describe()
    calibration_before = calibrate()
    import numpy as np
    import torch

    from analysis.engine.export import export_circuit_tracer
    from analysis.engine.metrics import reconstruction_metrics, replacement_metrics
    from analysis.engine.shards import CaptureReader, estimate_capture_bytes
    from analysis.engine.training import TrainingConfig, default_lr, train_sparse_coders

    work = bench.CACHE / f"analysis-every-layer-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with Stage(stages, "teacher and tokens"):
            conversion = bench.ensure_teacher(bench.find_gguf())
            train_seqs, train_info = bench.pack_sequences(
                bench.MEDQUAD / "medquad-train.jsonl", n_train // SEQ_LEN, SEED
            )
            held_seqs, held_info = bench.pack_sequences(bench.MEDQUAD / "medquad-eval.jsonl", n_held // SEQ_LEN, SEED)
            tokens_file = work / "capture-tokens.npy"
            np.save(tokens_file, np.concatenate([train_seqs, held_seqs]))
            model = bench.load_teacher()
            n_layers = model.config.num_hidden_layers
            d_model = model.config.hidden_size
        layers = list(range(n_layers))
        estimated = estimate_capture_bytes(total, n_layers, d_model, "float16", bench.TOKENS_PER_SHARD)
        free_before = free_bytes(work)
        log(f"capture of {n_layers} layers × {total:,} tokens: about {fmt_gb(estimated)}; {fmt_gb(free_before)} free")

        with Stage(stages, "capture, every layer (child)"):
            capture_dir = work / "capture"
            captured = bench.run_child_capture(tokens_file, total, layers, capture_dir, work)
        free_after_capture = free_bytes(work)
        shard_bytes = folder_bytes(capture_dir)
        log(f"  {captured['n_tokens']:,} tokens in {captured['capture_s']:.0f} s, {fmt_gb(shard_bytes)}")
        reader = CaptureReader(capture_dir)
        assert reader.n_tokens == total, (reader.n_tokens, total)

        config = TrainingConfig(
            layers=layers,
            kinds=["skip_transcoder"],
            expansion=args.expansion,
            k=args.k,
            batch_size=TRAIN_BATCH,
            n_tokens=n_train,
            held_out_tokens=n_held,
            seed=SEED,
        )
        last = [0.0]

        def progress(done: int, total_tokens: int, tokens_per_second: float = 0.0, **_) -> None:
            if time.monotonic() - last[0] > 60:
                last[0] = time.monotonic()
                log(f"  training: {done:,} of {total_tokens:,} tokens, {tokens_per_second:,.0f} tokens/s")

        bench.reset_peak_rss()
        with Stage(stages, "training, every layer side by side") as stage:
            t_cpu = time.process_time()
            result = train_sparse_coders(reader, config, progress=progress)
            train_cpu = time.process_time() - t_cpu
        train_peak = bench.rss_mib()["peak_mib"]
        coders = {layer: coder for (layer, _kind), coder in result.coders.items()}
        training = {
            "coders": len(coders),
            "tokens": result.tokens,
            "steps": result.steps,
            "wall_s": round(stage.seconds, 1),
            "cpu_s": round(train_cpu, 1),
            "tokens_per_second": round(result.tokens / stage.seconds, 1),
            "coder_tokens_per_second": round(result.tokens * len(coders) / stage.seconds, 1),
            "optimizer": config.optimizer,
            "lr": default_lr(args.expansion * d_model, config.optimizer),
            "input_lr_scale": config.input_lr_scale,
            "peak_mib": train_peak,
        }

        with Stage(stages, "metrics") as metrics_stage:
            rows = {}
            for layer, coder in coders.items():
                rm = reconstruction_metrics(coder, reader, layer, start=n_train, stop=total)
                rows[str(layer)] = {"fvu": rm.fvu, "l0": rm.l0, "dead_fraction": rm.dead_fraction}
            sets = {str(layer): {layer: coder} for layer, coder in coders.items()}
            sets["all"] = dict(coders)
            replaced = replacement_metrics(
                model, reader.sequences(n_train, total), sets, batch_size=bench.CAPTURE_BATCH
            )
            for layer in coders:
                m = replaced[str(layer)]
                rows[str(layer)].update({"kl": m.kl, "ce_increase": m.ce_increase})
            everything = replaced["all"]

        with Stage(stages, "circuit-tracer export") as export_stage:
            exported = export_circuit_tracer(
                coders, work / "circuit-tracer", n_layers=n_layers, model_name="HuggingFaceTB/SmolLM2-135M-Instruct"
            )
        from safetensors.torch import load_file

        first = load_file(str(exported / "layer_0.safetensors"))
        export = {
            "files": sum(1 for _ in exported.iterdir()),
            "bytes": folder_bytes(exported),
            "seconds": round(export_stage.seconds, 2),
            "layer_0_shapes": {k: list(v.shape) for k, v in first.items()},
        }
        end_to_end = sum(stages[name]["wall_s"] for name in stages if name != "teacher and tokens")

        with Stage(stages, "release shards") as release_stage:
            before = free_bytes(work)
            shutil.rmtree(capture_dir)
            freed = free_bytes(work) - before
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "analysis_every_layer",
        "issue": 14,
        "machine": machine,
        "calibration_ms": {"before": calibration_before, "after": calibrate()},
        "torch": {"version": torch.__version__, "threads": torch.get_num_threads()},
        "teacher": conversion,
        "data": {"train": train_info, "held_out": held_info},
        "settings": {
            "smoke": args.smoke,
            "n_layers": n_layers,
            "train_tokens": n_train,
            "held_out_tokens": n_held,
            "k": args.k,
            "expansion": args.expansion,
            "d_sae": args.expansion * d_model,
            "tokens_per_shard": bench.TOKENS_PER_SHARD,
        },
        "capture": {
            **{
                k: captured[k]
                for k in (
                    "n_tokens",
                    "n_shards",
                    "bytes",
                    "capture_s",
                    "capture_cpu_s",
                    "tokens_per_second",
                    "peak_mib",
                    "rss_at_checkpoints",
                )
            },  # fmt: skip
            "estimated_bytes": estimated,
            "bytes_on_disk": shard_bytes,
            "free_before": free_before,
            "free_after": free_after_capture,
        },
        "training": training,
        "layers": rows,
        "all_layers": {
            "clean_ce": everything.clean_ce,
            "replaced_ce": everything.replaced_ce,
            "ce_increase": everything.ce_increase,
            "kl": everything.kl,
            "n_predictions": everything.n_predictions,
        },
        "metrics_s": round(metrics_stage.seconds, 1),
        "export": export,
        "release": {"freed_bytes": freed, "seconds": round(release_stage.seconds, 2)},
        "end_to_end_s": round(end_to_end, 1),
        "stages": stages,
        "total_minutes": round((time.perf_counter() - started) / 60, 2),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(make_markdown(result), encoding="utf-8")
    log(f"wrote {out} and {out.with_suffix('.md').name}; {result['total_minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
