"""Activation captures: a teacher's MLP inputs and outputs over a dataset split, stored as shards.

The shards are written by :mod:`analysis.engine.capture` into a working folder while the job runs (a killed
capture resumes there from its last complete shard); when every shard and the manifest are written they become
blobs, one :class:`CaptureShard` row each, and only then is the capture ``complete``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from projects.models import Blob, Dataset, Job, LanguageModel, Organization, Project
from projects.tenancy import TenantModel


class CaptureStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    CAPTURING = "capturing", "Capturing"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class Capture(TenantModel):
    """One capture run's settings, progress and outcome."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="captures")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="captures")
    teacher = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="captures")
    #: The Hugging Face copy the capture ran on (the teacher itself, or its converted copy).
    torch_model = models.ForeignKey(
        LanguageModel, null=True, blank=True, on_delete=models.PROTECT, related_name="torch_captures"
    )
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="captures")
    split = models.CharField(max_length=8, default="train")
    #: Module-name patterns over ``named_modules()`` (``model.layers.*.mlp``), as typed.
    hookpoints = models.JSONField(default=list)
    #: Decoder-block indices the patterns selected.
    layers = models.JSONField(default=list)
    token_budget = models.PositiveIntegerField()
    seq_len = models.PositiveIntegerField(default=256)
    batch_size = models.PositiveIntegerField(default=8)
    tokens_per_shard = models.PositiveIntegerField(default=8192)
    dtype = models.CharField(max_length=10, default="float16")
    d_model = models.PositiveIntegerField(default=0)
    estimated_bytes = models.BigIntegerField(default=0)

    status = models.CharField(max_length=10, choices=CaptureStatus.choices, default=CaptureStatus.QUEUED)
    error = models.TextField(blank=True)
    n_tokens = models.BigIntegerField(default=0)
    n_shards = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    tokens_per_second = models.FloatField(default=0.0)
    device = models.CharField(max_length=40, blank=True)
    #: When a person freed the shards' disk (the rows, coders and features stay; training needs a new capture).
    shards_released_at = models.DateTimeField(null=True, blank=True)

    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Capture #{self.pk} of {self.teacher.name} on {self.dataset.name}"

    @property
    def is_complete(self) -> bool:
        return self.status == CaptureStatus.COMPLETE

    @property
    def has_shards(self) -> bool:
        """Complete, and its shards still on disk (not released)."""
        return self.is_complete and self.shards_released_at is None


class CaptureShard(TenantModel):
    """One file of a complete capture: a shard (safetensors: per layer ``L{i}.in`` / ``L{i}.out``, token ids,
    document ids, positions), or the ``manifest.json`` / ``capture.json`` that describe them."""

    tenant_field = "capture__organization"

    capture = models.ForeignKey(Capture, on_delete=models.CASCADE, related_name="shards")
    #: File name inside the capture folder (``shard-00000.safetensors``, ``manifest.json``, ``capture.json``).
    name = models.CharField(max_length=100)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="capture_shards")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["capture", "name"], name="uniq_capture_shard_name")]

    def __str__(self) -> str:
        return self.name
