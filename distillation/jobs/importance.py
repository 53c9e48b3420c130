"""The importance job: the teacher in torch over the domain dataset (the engine), the scores as a JSON blob, the
summary the page charts, and the platform's three proposals."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from django.utils import timezone

from distillation.actions.importance import IMPORTANCE_JOB
from distillation.actions.recipes import do_propose_recipes
from distillation.models import AnalysisStatus, ImportanceAnalysis
from projects import blobs
from projects.actions import ActionError
from projects.background import JobContext, JobKind, Refused, register
from projects.models import Job

WRITE_SECONDS = 2.0


@register
class ImportanceAnalysisJob(JobKind):
    """Layer, head / KV-group and neuron importance of a teacher on a dataset; then three proposed recipes."""

    name = IMPORTANCE_JOB
    title = "Importance analysis"
    queue = "gpu"

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("analysis"), int):
            raise ValueError('An importance job needs its analysis: {"analysis": <id>}.')
        cleaned = {"analysis": params["analysis"]}
        if isinstance(params.get("then_build"), int | float):
            cleaned["then_build"] = float(params["then_build"])
        return cleaned

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        ImportanceAnalysis.objects.for_org(job.organization).filter(pk=job.params.get("analysis")).exclude(
            status=AnalysisStatus.COMPLETE
        ).update(status=AnalysisStatus.FAILED, error=error or status, finished_at=timezone.now())

    def run(self, job: Job, ctx: JobContext) -> dict:
        from distillation.engine.families import UnsupportedArchitecture
        from distillation.engine.importance import compute_importance, weight_statistics, windows
        from projects.torch_loading import dataset_token_ids, device, load_teacher

        analysis = (
            ImportanceAnalysis.objects.for_org(job.organization)
            .select_related("torch_model", "dataset", "teacher")
            .filter(pk=job.params.get("analysis"))
            .first()
        )
        if analysis is None:
            raise Refused("The importance analysis was deleted before its job ran.")
        ImportanceAnalysis.objects.filter(pk=analysis.pk).update(
            status=AnalysisStatus.RUNNING, error="", job=job, device=str(device())
        )
        ctx.progress(0.0, f"Loading {analysis.teacher.name} in torch", force=True)
        try:
            model, tokenizer, _ = load_teacher(analysis.torch_model)
        except ActionError as exc:
            raise Refused(exc.message) from exc
        documents = dataset_token_ids(analysis.dataset, tokenizer, analysis.split)
        n_windows = analysis.token_budget // analysis.seq_len
        last = [0.0]

        def progress(done: int, total: int, phase: str = "scores", tokens_per_second: float = 0.0, **_: Any) -> None:
            if phase == "scores":
                fraction = 0.75 * done / max(total, 1)
                message = f"{done * analysis.seq_len:,} of {total * analysis.seq_len:,} tokens · "
                message += f"{tokens_per_second:,.0f} tokens/s"
                if time.monotonic() - last[0] > WRITE_SECONDS:
                    last[0] = time.monotonic()
                    ImportanceAnalysis.objects.filter(pk=analysis.pk).update(
                        n_tokens=done * analysis.seq_len, tokens_per_second=tokens_per_second
                    )
            else:
                fraction = 0.75 + 0.2 * done / max(total, 1)
                message = f"Skipping layers and masking KV groups on the sample: {done} of {total}"
            ctx.progress(fraction, message)

        def should_stop() -> bool:
            ctx.check_cancelled()
            return False

        try:
            report = compute_importance(
                model, windows(documents, analysis.seq_len, analysis.token_budget), n_windows=n_windows,
                batch_size=analysis.batch_size, sample_windows=analysis.sample_windows, progress=progress,
                should_stop=should_stop,
            )  # fmt: skip
        except UnsupportedArchitecture as exc:
            raise Refused(f"Students are {exc}.") from exc
        except ValueError as exc:
            raise Refused(f"{exc}; use a larger dataset or a shorter sequence length.") from exc
        summary = report.summary() | {"weight_stats": weight_statistics(model)}
        blob = blobs.store_stream(io.BytesIO(json.dumps(report.to_json()).encode()))
        ImportanceAnalysis.objects.filter(pk=analysis.pk).update(
            status=AnalysisStatus.COMPLETE, arch=report.arch.to_json(), summary=summary, report_blob=blob,
            n_tokens=report.n_tokens, tokens_per_second=report.n_tokens / max(report.seconds, 1e-9),
            finished_at=timezone.now(),
        )  # fmt: skip
        analysis.refresh_from_db()
        ctx.progress(0.96, "Proposing recipes", force=True)
        recipes = do_propose_recipes(analysis, job.created_by)
        result = {"analysis": analysis.pk, "tokens": report.n_tokens, "recipes": [r.pk for r in recipes]}
        if job.params.get("then_build"):
            result["build"] = self.then_build(analysis, job, float(job.params["then_build"]))
        ctx.progress(1.0, f"{report.n_tokens:,} tokens scored; {len(recipes)} recipes proposed", force=True)
        return result

    def then_build(self, analysis: ImportanceAnalysis, job: Job, fraction: float) -> int:
        """The one-shot path: a recipe at ``fraction`` by importance, approved in the requester's name, built."""
        from distillation.actions.builds import do_build
        from distillation.actions.recipes import do_approve_recipe, do_recipe_by_strategy
        from distillation.models import Strategy

        try:
            recipe = do_recipe_by_strategy(analysis, job.created_by, Strategy.IMPORTANCE_RATIO, ratio=fraction)
            recipe = do_approve_recipe(recipe, job.created_by)
            return do_build(recipe, job.created_by).pk
        except ActionError as exc:
            raise Refused(f"The analysis is done, but the student could not be started: {exc.message}") from exc
