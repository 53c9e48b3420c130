"""Importance analyses: how much each layer, attention head / KV group and MLP neuron of a teacher matters on a
domain dataset. The row keeps the summary the pages chart; the full scores (every neuron) are a JSON blob."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from projects.models import Blob, Dataset, Job, LanguageModel, Organization, Project
from projects.tenancy import TenantModel


class AnalysisStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class ImportanceAnalysis(TenantModel):
    """One importance analysis of ``teacher`` over ``dataset``'s split."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="importance_analyses")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="importance_analyses")
    teacher = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="importance_analyses")
    #: The Hugging Face copy torch loaded (the teacher itself, or its converted copy).
    torch_model = models.ForeignKey(LanguageModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="importance_analyses")
    split = models.CharField(max_length=8, default="train")
    token_budget = models.PositiveIntegerField()
    seq_len = models.PositiveIntegerField(default=256)
    batch_size = models.PositiveIntegerField(default=4)
    #: Windows on which the loss increase of skipping a layer / masking a KV group is measured.
    sample_windows = models.PositiveIntegerField(default=8)

    status = models.CharField(max_length=10, choices=AnalysisStatus.choices, default=AnalysisStatus.QUEUED)
    error = models.TextField(blank=True)
    #: The teacher's shape: ``{"layers", "heads", "kv_heads", "hidden", "intermediate", "vocab", "params"}``.
    arch = models.JSONField(default=dict, blank=True)
    #: What the pages chart: per-layer influence and skip loss, heads × layers scores, neuron score summaries.
    summary = models.JSONField(default=dict, blank=True)
    report_blob = models.ForeignKey(Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    n_tokens = models.BigIntegerField(default=0)
    tokens_per_second = models.FloatField(default=0.0)
    device = models.CharField(max_length=40, blank=True)

    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Importance of {self.teacher.name} on {self.dataset.name}"

    @property
    def is_complete(self) -> bool:
        return self.status == AnalysisStatus.COMPLETE
