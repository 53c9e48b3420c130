"""The build job: an approved recipe becomes a student in the project.

Phases (timed, each in the build's row): teacher targets (cached per teacher, dataset, budget and window, shared by
every build), pruning, healing by distillation (live loss curve; checkpoints in ``DATA_DIR/distillation/builds/<id>``
so a killed build's retry resumes where it stopped), the Hugging Face checkpoint and the f16 GGUF, quantization,
evaluation (perplexity on the domain eval split and the control dataset in torch and through llama.cpp, speed,
answers side by side), and only then the student's models are added to the project: a failed or killed build
shows no student.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from distillation.actions.builds import BUILD_JOB
from distillation.models import Build, BuildStatus, RecipeStatus
from projects.actions import ActionError
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Dataset, DatasetRole, DatasetStatus, Job, LanguageModel, ModelFormat, ModelRole

CURVE_POINTS = 400
WRITE_SECONDS = 2.0
EVAL_TOKENS = 8192
QUESTIONS = 5


def build_dir(build: Build) -> Path:
    return Path(settings.DATA_DIR) / "distillation" / "builds" / str(build.pk)


def targets_dir(teacher: LanguageModel, dataset: Dataset, budget: int, seq_len: int, k: int) -> Path:
    return Path(settings.DATA_DIR) / "distillation" / "targets" / f"{teacher.pk}-{dataset.pk}-{budget}-{seq_len}-{k}"


def _thin(points: list[list[float]]) -> list[list[float]]:
    return points if len(points) <= CURVE_POINTS else points[:-1:2] + [points[-1]]


def printable(text: str) -> str:
    """Model text as stored: NUL (which PostgreSQL's jsonb refuses) as the visible U+2400 symbol."""
    return text.replace("\x00", "\u2400")


def questions_of(dataset: Dataset, limit: int = QUESTIONS) -> list[str]:
    """The first questions of the dataset's eval split (the text before “Answer:”, or its first sentence)."""
    from projects import blobs
    from projects.engine.datasets import read_documents

    found = []
    path = blobs.local_path(dataset.documents_blob)
    for record in read_documents(path, split="eval", seed=dataset.split_seed, ratio=dataset.split_ratio):
        text = record["text"].strip()
        question = re.split(r"\n?\s*Answer\s*:", text, maxsplit=1)[0]
        question = re.sub(r"^\s*Question\s*:\s*", "", question).strip()
        if 8 <= len(question) <= 400:
            found.append(question)
        if len(found) == limit:
            break
    return found


def control_dataset(build: Build) -> Dataset | None:
    project = build.recipe.project
    return (
        Dataset.objects.for_org(build.organization)
        .filter(role=DatasetRole.CONTROL, status=DatasetStatus.READY)
        .order_by("-project_id" if project else "pk")
        .first()
    )


@register
class BuildStudent(JobKind):
    """Prune, heal by distillation, write GGUF, quantize, evaluate; then the student joins the project."""

    name = BUILD_JOB
    title = "Build a student"
    queue = "gpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("build"), int):
            raise ValueError('A build job needs its build: {"build": <id>}.')
        return {"build": params["build"]}

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        builds = Build.objects.for_org(job.organization).filter(pk=job.params.get("build"))
        build = builds.exclude(status=BuildStatus.BUILT).select_related("recipe").first()
        if build is not None:
            builds.update(status=BuildStatus.FAILED, error=error or status, finished_at=timezone.now())
            build.recipe.__class__.objects.filter(pk=build.recipe_id, status=RecipeStatus.BUILDING).update(
                status=RecipeStatus.FAILED
            )

    def run(self, job: Job, ctx: JobContext) -> dict:
        from distillation.engine.calibration import CalibrationError, final_weights, heal, teacher_targets
        from distillation.engine.export import ExportError, quantize, write_gguf, write_hf
        from distillation.engine.families import UnsupportedArchitecture
        from distillation.engine.importance import windows
        from distillation.engine.pruning import PruningError, prune
        from distillation.engine.recipes import Recipe
        from projects.actions import conversion as conversion_actions
        from projects.engine.conversion import fetch_converter
        from projects.jobs.conversion import tools_dir
        from projects.torch_loading import dataset_token_ids, load_teacher

        build = (
            Build.objects.for_org(job.organization)
            .select_related("recipe__teacher", "recipe__analysis__dataset", "recipe__project")
            .filter(pk=job.params.get("build"))
            .first()
        )
        if build is None:
            raise Refused("The build was deleted before its job ran.")
        recipe_row, analysis = build.recipe, build.recipe.analysis
        if analysis is None:
            raise Refused("The recipe has no importance analysis, so no domain dataset to heal on.")
        recipe = Recipe.from_json(build.document)
        calibration = recipe.calibration
        timings: dict[str, float] = dict(build.timings or {})
        rows = Build.objects.filter(pk=build.pk)

        def phase(status: str, fraction: float, message: str) -> float:
            rows.update(status=status, timings=timings, error="")
            ctx.progress(fraction, message, force=True)
            return time.monotonic()

        rows.update(job=job)
        started = phase(BuildStatus.PRUNING, 0.0, f"Loading {recipe_row.teacher.name} in torch")
        try:
            torch_model = conversion_actions.torch_copy(recipe_row.teacher)
            teacher, tokenizer, teacher_folder = load_teacher(torch_model)
        except ActionError as exc:
            raise Refused(exc.message) from exc
        dataset = analysis.dataset
        documents = dataset_token_ids(dataset, tokenizer, "train")
        pool = list(windows(documents, calibration.seq_len, calibration.token_budget))
        available = len(pool) * calibration.seq_len
        if available < calibration.token_budget:
            raise Refused(
                f"The dataset {dataset.name} gives {available:,} training tokens in windows of {calibration.seq_len}; "
                f"the recipe heals on {calibration.token_budget:,}. Lower the recipe's token budget to at most "
                f"{available:,}, or analyse a larger dataset."
            )
        folder = targets_dir(torch_model, dataset, calibration.token_budget, calibration.seq_len, calibration.top_k)
        targets = teacher_targets(
            teacher, pool, folder, k=calibration.top_k, batch_size=calibration.batch_size,
            progress=lambda done, total, **_: ctx.progress(0.15 * done / max(total, 1),
                                                           f"Teacher targets: {done:,} of {total:,} windows"),
        )  # fmt: skip
        timings["targets"] = time.monotonic() - started

        started = phase(BuildStatus.PRUNING, 0.15, "Pruning")
        try:
            student = prune(teacher, recipe)
        except (PruningError, UnsupportedArchitecture) as exc:
            raise Refused(f"The recipe does not fit the teacher: {exc}") from exc
        timings["pruning"] = time.monotonic() - started

        started = phase(BuildStatus.CALIBRATING, 0.17, "Healing by distillation")
        work = build_dir(build)
        curves: dict[str, list[list[float]]] = dict(build.curves or {})
        last = [0.0]

        def on_step(step: int, total: int, loss: float, kl: float, ce: float, tokens_per_second: float,
                    lr: float) -> None:  # fmt: skip
            curves["loss"] = _thin([*curves.get("loss", []), [step, round(loss, 5)]])
            curves["ce"] = _thin([*curves.get("ce", []), [step, round(ce, 5)]])
            ctx.progress(0.17 + 0.58 * step / total,
                         f"Step {step} of {total} · KL {kl:.4f} · lr {lr:.2g} · "
                         f"{tokens_per_second:,.0f} tokens/s")  # fmt: skip
            if time.monotonic() - last[0] > WRITE_SECONDS or step == total:
                last[0] = time.monotonic()
                rows.update(curves=curves, steps_done=step, steps_total=total, tokens_per_second=tokens_per_second)

        def should_stop() -> bool:
            ctx.check_cancelled()
            return False

        try:
            heal(student, targets, calibration, work / "healing", on_step=on_step, should_stop=should_stop)
        except CalibrationError as exc:
            raise Refused(str(exc)) from exc
        from safetensors.torch import load_file

        student.load_state_dict(load_file(str(final_weights(work / "healing"))), strict=False)
        timings["calibrating"] = time.monotonic() - started

        started = phase(BuildStatus.EXPORTING, 0.75, "Writing the Hugging Face checkpoint and the GGUF")
        try:
            hf = write_hf(student, work / "student-hf", teacher_folder)
            converter = fetch_converter(tools_dir())
            f16 = work / "student-f16.gguf"
            if not f16.exists():
                write_gguf(hf, f16, converter)
        except ExportError as exc:
            raise Refused(str(exc)) from exc
        timings["exporting"] = time.monotonic() - started

        started = phase(BuildStatus.QUANTIZING, 0.82, "Quantizing")
        quantized = []
        try:
            for i, qtype in enumerate(recipe.quant_types):
                ctx.progress(0.82 + 0.06 * i / len(recipe.quant_types), f"Quantizing to {qtype}")
                quantized.append(quantize(f16, work / f"student-{qtype.lower()}.gguf", qtype))
        except ExportError as exc:
            raise Refused(str(exc)) from exc
        timings["quantizing"] = time.monotonic() - started

        started = phase(BuildStatus.EVALUATING, 0.88, "Evaluating against the teacher")
        report = self.evaluate(build, teacher, student, tokenizer, f16, quantized, ctx)
        timings["evaluating"] = time.monotonic() - started

        ctx.progress(0.98, "Adding the student to the project", force=True)
        student_model = self.add_model(build, f16, f"{recipe_row.name} · build #{build.pk} · F16")
        quant_rows = []
        for q in quantized:
            model = self.add_model(build, q.path, f"{recipe_row.name} · build #{build.pk} · {q.requested}")
            quant_rows.append(q.to_json() | {"model": model.pk})
        rows.update(
            status=BuildStatus.BUILT, student=student_model, quantized=quant_rows, report=report, timings=timings,
            finished_at=timezone.now(),
        )  # fmt: skip
        recipe_row.__class__.objects.filter(pk=recipe_row.pk).update(status=RecipeStatus.BUILT)
        shutil.rmtree(work / "healing", ignore_errors=True)
        ctx.progress(1.0, f"Built: {student_model.parameter_count:,} parameters", force=True)
        return {"build": build.pk, "student": student_model.pk, "quantized": [q["model"] for q in quant_rows]}

    def add_model(self, build: Build, path: Path, name: str) -> LanguageModel:
        from projects.actions.teachers import do_import_model_files

        model = do_import_model_files(path, build.recipe.project, build.created_by, name=name[:200])
        LanguageModel.objects.filter(pk=model.pk).update(role=ModelRole.STUDENT)
        model.refresh_from_db()
        return model

    def evaluate(self, build: Build, teacher: Any, student: Any, tokenizer: Any, f16: Path, quantized: list,
                 ctx: JobContext) -> dict:  # fmt: skip
        from distillation.engine import evaluation as ev
        from distillation.engine.importance import windows
        from projects import blobs
        from projects.torch_loading import dataset_token_ids

        seq_len = build.recipe.document.get("calibration", {}).get("seq_len", 256)
        domain = build.recipe.analysis.dataset
        control = control_dataset(build)
        sets = {"domain": list(windows(dataset_token_ids(domain, tokenizer, "eval"), seq_len, EVAL_TOKENS))}
        if control is not None:
            sets["control"] = list(windows(dataset_token_ids(control, tokenizer, None), seq_len, EVAL_TOKENS))
        prompt = sets["domain"][0][:128] if sets["domain"] else [1] * 32
        rows = []

        def measure(key: str, name: str, params: int, torch_model: Any = None, gguf: Path | None = None) -> dict:
            row: dict[str, Any] = {"key": key, "name": name, "params": params}
            for label, wins in sets.items():
                if not wins:
                    continue
                if torch_model is not None:
                    row[f"{label}_ppl"] = ev.torch_perplexity(torch_model, wins)
                else:
                    row[f"{label}_ppl"] = ev.gguf_perplexity(gguf, wins)
            if gguf is not None:
                speed = ev.gguf_speed(gguf, prompt, decode_tokens=64)
                row |= {"bytes": gguf.stat().st_size, "prefill_tps": speed.prefill_tokens_per_second,
                        "decode_tps": speed.decode_tokens_per_second}  # fmt: skip
            return row

        teacher_params, student_params = ev.parameter_count(teacher), ev.parameter_count(student)
        ctx.progress(0.89, "Perplexity of the teacher and the student in torch")
        rows.append(measure("teacher-torch", "Teacher (torch)", teacher_params, torch_model=teacher))
        rows.append(
            measure("student-torch", "Student before quantization (torch)", student_params, torch_model=student)
        )
        teacher_gguf = None
        source = build.recipe.teacher
        if source.format == ModelFormat.GGUF:
            file = source.files.first()
            if file is not None:
                teacher_gguf = blobs.local_path(file.blob)
                ctx.progress(0.92, "The teacher's GGUF through llama.cpp")
                rows.append(measure("teacher-gguf", f"Teacher GGUF ({source.file_type or 'as uploaded'})",
                                    teacher_params, gguf=teacher_gguf))  # fmt: skip
        rows.append(measure("student-f16", "Student F16 (llama.cpp)", student_params, gguf=f16))
        for q in quantized:
            ctx.progress(0.94, f"The student's {q.requested} through llama.cpp")
            rows.append(measure(f"student-{q.requested.lower()}", f"Student {q.requested} (llama.cpp)",
                                student_params, gguf=q.path))  # fmt: skip
        t, s = rows[0], rows[1]
        index = None
        if "control_ppl" in t and "domain_ppl" in t:
            index = ev.specialisation_index(t["domain_ppl"], t["control_ppl"], s["domain_ppl"], s["control_ppl"])
        ctx.progress(0.96, "Answering domain questions side by side")
        chat_file = quantized[0].path if quantized else f16
        answers = [
            {
                "question": q,
                "teacher": printable(ev.answer(teacher_gguf, q)) if teacher_gguf else "",
                "student": printable(ev.answer(chat_file, q)),
            }
            for q in questions_of(domain)
        ]
        return {
            "rows": rows, "specialisation_index": index, "answers": answers,
            "domain": domain.name, "control": control.name if control else None, "eval_tokens": EVAL_TOKENS,
            "architecture": f"llama: {student.config.num_hidden_layers} layers, {student.config.num_attention_heads} "
            f"heads in {student.config.num_key_value_heads} KV groups, MLP width {student.config.intermediate_size} "
            "(a standard llama config, uniform widths)",
        }  # fmt: skip
