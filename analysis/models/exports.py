"""Exports of a training run's coders in the formats the interpretability ecosystem loads (a zip blob each)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from analysis.models.coders import CoderKind, CoderRun
from projects.models import Blob, Job, Organization
from projects.tenancy import TenantModel


class ExportFormat(models.TextChoices):
    CIRCUIT_TRACER = "circuit_tracer", "circuit-tracer transcoder set"
    SAELENS = "saelens", "SAELens"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    WRITING = "writing", "Writing"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class CoderExport(TenantModel):
    """One export: the run's coders of one kind as a zip, ready to download only when ``complete``."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="coder_exports")
    run = models.ForeignKey(CoderRun, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    kind = models.CharField(max_length=16, choices=CoderKind.choices)
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    error = models.TextField(blank=True)
    blob = models.ForeignKey(Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_format_display()} export of run #{self.run_id} ({self.get_kind_display()})"

    @property
    def filename(self) -> str:
        return f"hartonomous-run{self.run_id}-{self.kind}-{self.format}.zip"
