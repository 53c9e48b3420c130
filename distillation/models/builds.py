"""Builds: an approved recipe made into a student — pruned, healed by distillation from the teacher, written as
GGUF and quantized — and then evaluated against the teacher and the baselines."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from distillation.models.recipes import Recipe
from projects.models import Job, LanguageModel, Organization
from projects.tenancy import TenantModel


class BuildStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PRUNING = "pruning", "Pruning"
    CALIBRATING = "calibrating", "Healing by distillation"
    EXPORTING = "exporting", "Writing GGUF"
    QUANTIZING = "quantizing", "Quantizing"
    EVALUATING = "evaluating", "Evaluating"
    BUILT = "built", "Built"
    FAILED = "failed", "Failed"


class Build(TenantModel):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="builds")
    recipe = models.ForeignKey(Recipe, on_delete=models.PROTECT, related_name="builds")
    #: The recipe document as built (a later edit of the recipe never changes what a build was).
    document = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=BuildStatus.choices, default=BuildStatus.QUEUED)
    error = models.TextField(blank=True)
    #: ``{"kl": [[step, value], ...], "ce": [...]}``, thinned to a few hundred points.
    curves = models.JSONField(default=dict, blank=True)
    steps_done = models.PositiveIntegerField(default=0)
    steps_total = models.PositiveIntegerField(default=0)
    tokens_per_second = models.FloatField(default=0.0)
    #: Seconds per phase: ``{"targets", "pruning", "calibrating", "exporting", "quantizing", "evaluating"}``.
    timings = models.JSONField(default=dict, blank=True)
    #: The student in the project: the f16 GGUF; its quantized copies derive from it.
    student = models.ForeignKey(
        LanguageModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="student_builds"
    )
    #: ``[{"requested", "used": {tensor type: count}, "bytes", "model": id}]``.
    quantized = models.JSONField(default=list, blank=True)
    #: The evaluation report (teacher, student, baselines; perplexities, speeds, answers side by side).
    report = models.JSONField(default=dict, blank=True)

    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Build #{self.pk} of {self.recipe.name}"
