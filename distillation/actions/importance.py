"""Starting importance analyses: the teacher, dataset and budget checked while the person waits, then a job."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from distillation.models import AnalysisStatus, ImportanceAnalysis
from projects.actions import ActionError, do_enqueue_job
from projects.actions import conversion as conversion_actions
from projects.models import Dataset, LanguageModel, ModelStatus

IMPORTANCE_JOB = "distillation.importance"


def do_start_importance(
    teacher: LanguageModel,
    dataset: Dataset,
    user: User,
    *,
    token_budget: int = 32_768,
    seq_len: int = 256,
    batch_size: int = 4,
    sample_windows: int = 8,
    split: str = "train",
    then_build: float | None = None,
) -> ImportanceAnalysis:
    """Create an importance analysis of ``teacher`` on ``dataset`` and enqueue its job. With ``then_build`` (a
    fraction of the teacher's parameters), the job then makes a recipe of that size by importance, approves it in
    ``user``'s name and starts its build: the one-shot ``distill``."""
    if teacher.organization_id != dataset.organization_id:  # pragma: no cover - callers scope both
        raise ActionError("The teacher and the dataset belong to different organisations.", code="not_found")
    if teacher.status != ModelStatus.READY:
        raise ActionError(f"{teacher.name} is not ready ({teacher.status}).", field="teacher", code="conflict")
    if not teacher.can("analysis"):  # the same rule: llama-family weights torch can load
        reason = (teacher.capabilities.get("reasons") or {}).get("analysis", "")
        raise ActionError(
            f"Students are not supported yet for {teacher.name} ({teacher.architecture or 'unknown architecture'}): "
            f"{reason} Supported: the llama family (LlamaForCausalLM; SmolLM2, TinyLlama, Llama 2/3).",
            field="teacher",
        )
    if dataset.status != "ready":
        raise ActionError(f"The dataset {dataset.name} is not ready ({dataset.status}).", field="dataset")
    if split not in ("train", "eval"):
        raise ActionError("The split is “train” or “eval”.", field="split")
    for name, value, low, high in (
        ("token_budget", token_budget, 256, 1 << 30),
        ("seq_len", seq_len, 8, 32_768),
        ("batch_size", batch_size, 1, 1024),
        ("sample_windows", sample_windows, 1, 1024),
    ):
        if not isinstance(value, int) or not low <= value <= high:
            raise ActionError(f"{name.replace('_', ' ')} must be a whole number from {low:,} to {high:,}.", field=name)
    if dataset.token_count and dataset.token_count < seq_len * 2:
        raise ActionError(
            f"The dataset {dataset.name} has {dataset.token_count:,} tokens: too few for windows of {seq_len}.",
            field="dataset",
        )
    if then_build is not None and not 0.05 <= then_build <= 1.0:
        raise ActionError(
            "The student's size is a fraction of the teacher's parameters, from 0.05 to 1.", field="fraction"
        )
    torch_model = conversion_actions.torch_copy(teacher, user)
    with transaction.atomic():
        analysis = ImportanceAnalysis.objects.create(
            organization=teacher.organization,
            project=teacher.project,
            teacher=teacher,
            torch_model=torch_model,
            dataset=dataset,
            split=split,
            token_budget=token_budget,
            seq_len=seq_len,
            batch_size=batch_size,
            sample_windows=sample_windows,
            status=AnalysisStatus.QUEUED,
            created_by=user,
        )
        params = {"analysis": analysis.pk} | ({"then_build": then_build} if then_build else {})
        job = do_enqueue_job(teacher.organization, IMPORTANCE_JOB, project=teacher.project, user=user, params=params)
        ImportanceAnalysis.objects.filter(pk=analysis.pk).update(job=job)
        analysis.job = job
    return analysis
