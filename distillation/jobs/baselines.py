"""The baselines job: the students a sceptic would build instead, at the same parameter count and healing budget
as a built student, measured on the same domain and control windows, added to its report.

* **magnitude**: the student's shapes, KV groups and neurons chosen by weight magnitude (no data);
* **generic Wanda**: the student's shapes, chosen by scores measured on the control dataset instead of the domain;
* **last layers** / **lowest influence**: full width, the last N layers / the N of lowest block influence dropped,
  N giving the nearest parameter count.

Each is pruned from the teacher and healed exactly like the student (same targets, settings and budget), then
measured like the student: perplexity in torch, then written as an f16 GGUF by llama.cpp's converter, quantized to
the student's first quantization type, and that file's perplexity, size and prefill/decode speed measured through
llama.cpp. The baselines' files are working files, deleted when the job ends: they are evidence, not models.
"""

from __future__ import annotations

import shutil
from typing import Any

from distillation.actions.builds import BASELINES_JOB
from distillation.jobs.builds import build_dir, control_dataset, targets_dir
from distillation.models import Build, BuildStatus
from projects.actions import ActionError
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Job


@register
class EvaluateBaselines(JobKind):
    name = BASELINES_JOB
    title = "Baselines of a student"
    queue = "gpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("build"), int):
            raise ValueError('A baselines job needs its build: {"build": <id>}.')
        return {"build": params["build"]}

    def run(self, job: Job, ctx: JobContext) -> dict:
        from distillation.actions.recipes import report_of
        from distillation.engine import evaluation as ev
        from distillation.engine import recipes as rx
        from distillation.engine.calibration import heal, teacher_targets
        from distillation.engine.export import ExportError, quantize, write_gguf, write_hf
        from distillation.engine.importance import compute_importance, magnitude_report, windows
        from distillation.engine.pruning import prune
        from distillation.jobs.builds import EVAL_TOKENS
        from projects.actions import conversion as conversion_actions
        from projects.engine.conversion import fetch_converter
        from projects.jobs.conversion import tools_dir
        from projects.torch_loading import dataset_token_ids, load_teacher

        build = (
            Build.objects.for_org(job.organization)
            .select_related("recipe__teacher", "recipe__analysis__dataset")
            .filter(pk=job.params.get("build"), status=BuildStatus.BUILT)
            .first()
        )
        if build is None:
            raise Refused("The build is gone or not built.")
        analysis = build.recipe.analysis
        guided = rx.Recipe.from_json(build.document)
        calibration = guided.calibration
        ctx.progress(0.0, "Loading the teacher", force=True)
        try:
            torch_model = conversion_actions.torch_copy(build.recipe.teacher)
            teacher, tokenizer, teacher_folder = load_teacher(torch_model)
        except ActionError as exc:
            raise Refused(exc.message) from exc
        report = report_of(analysis)
        dataset = analysis.dataset
        pool = list(
            windows(dataset_token_ids(dataset, tokenizer, "train"), calibration.seq_len, calibration.token_budget)
        )
        folder = targets_dir(torch_model, dataset, calibration.token_budget, calibration.seq_len, calibration.top_k)
        targets = teacher_targets(teacher, pool, folder, k=calibration.top_k, batch_size=calibration.batch_size)
        control = control_dataset(build)
        eval_sets = {"domain": list(windows(dataset_token_ids(dataset, tokenizer, "eval"), calibration.seq_len,
                                            EVAL_TOKENS))}  # fmt: skip
        candidates: dict[str, rx.Recipe] = {
            "magnitude": rx.same_shapes(guided, magnitude_report(teacher), name="Baseline: weight magnitude",
                                        reason="the student's shapes, chosen by weight magnitude"),
        }  # fmt: skip
        notes = []
        if control is not None:
            control_windows = list(windows(dataset_token_ids(control, tokenizer, None), calibration.seq_len,
                                           analysis.token_budget))  # fmt: skip
            eval_sets["control"] = control_windows[: max(1, EVAL_TOKENS // calibration.seq_len)]
            ctx.progress(0.05, f"Scores on the control text ({control.name})", force=True)
            generic = compute_importance(teacher, iter(control_windows), batch_size=analysis.batch_size,
                                         sample_windows=analysis.sample_windows)  # fmt: skip
            reason = f"the student's shapes, scored on {control.name}"
            candidates["generic_wanda"] = rx.same_shapes(
                guided, generic, name="Baseline: Wanda on generic text", reason=reason
            )
        else:
            notes.append("no control dataset in the organisation: the generic-text baseline and control perplexity "
                         "were skipped")  # fmt: skip
        n_drop = rx.layers_for_fraction(report.arch, rx.params_of(guided) / report.arch.params)
        candidates["last_layers"] = rx.layer_drop_last(report, n_drop)
        candidates["lowest_influence"] = rx.layer_drop_lowest_influence(report, n_drop)
        rows = []
        work = build_dir(build) / "baselines"
        qtype = guided.quant_types[0] if guided.quant_types else None
        prompt = eval_sets["domain"][0][:128] if eval_sets["domain"] else [1] * 32
        for i, (key, recipe) in enumerate(candidates.items()):
            recipe.calibration = calibration
            ctx.progress(0.1 + 0.85 * i / len(candidates), f"{recipe.name}: pruning and healing")
            student = prune(teacher, recipe)
            heal(student, targets, calibration, work / key,
                 should_stop=lambda: bool(ctx.check_cancelled()))  # fmt: skip
            row = {
                "key": f"baseline-{key}",
                "name": recipe.name,
                "params": ev.parameter_count(student),
                "layers": len(recipe.layers_kept),
                "kv_groups": recipe.kv_groups,
                "mlp_width": recipe.width,
            }
            for label, wins in eval_sets.items():
                if wins:
                    row[f"{label}_ppl"] = ev.torch_perplexity(student, wins)
            ctx.progress(0.1 + 0.85 * (i + 0.7) / len(candidates), f"{recipe.name}: GGUF through llama.cpp")
            try:
                hf = write_hf(student, work / key / "hf", teacher_folder)
                f16 = write_gguf(hf, work / key / "f16.gguf", fetch_converter(tools_dir()))
                shipped = quantize(f16, work / key / f"{qtype.lower()}.gguf", qtype) if qtype else None
            except ExportError as exc:
                raise Refused(f"{recipe.name}: {exc}") from exc
            path = shipped.path if shipped else f16
            row |= {"quant_type": shipped.requested if shipped else "F16", "bytes": path.stat().st_size}
            for label, wins in eval_sets.items():
                if wins:
                    row[f"{label}_ppl_gguf"] = ev.gguf_perplexity(path, wins)
            speed = ev.gguf_speed(path, prompt, decode_tokens=64)
            row |= {"prefill_tps": speed.prefill_tokens_per_second, "decode_tps": speed.decode_tokens_per_second}
            rows.append(row)
            shutil.rmtree(work / key, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        fresh = Build.objects.get(pk=build.pk)
        report_json = dict(fresh.report or {})
        report_json["baselines"] = rows
        report_json["baseline_notes"] = notes
        student_row = next((r for r in report_json.get("rows", []) if r["key"] == "student-torch"), None)
        if student_row:
            report_json["beats_every_baseline"] = all(student_row["domain_ppl"] < r["domain_ppl"] for r in rows)
        Build.objects.filter(pk=build.pk).update(report=report_json)
        ctx.progress(1.0, f"{len(rows)} baselines measured", force=True)
        return {"build": build.pk, "baselines": len(rows)}
