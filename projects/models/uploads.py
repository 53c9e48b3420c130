"""Chunked, resumable uploads that become model files or dataset sources once their hash is checked."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from projects.models.blobs import Blob
from projects.models.projects import Project
from projects.models.tenancy import Organization
from projects.tenancy import TenantModel


class UploadStatus(models.TextChoices):
    RECEIVING = "receiving", "Receiving"
    COMPLETE = "complete", "Complete"
    ABORTED = "aborted", "Aborted"


class Upload(TenantModel):
    """A resumable, chunked upload into a project; becomes a Blob when complete.

    Chunks are appended to a part file under ``DATA_DIR/uploads``; ``received`` is the
    length of what is on disk, so a dropped connection resumes from there.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="uploads")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="uploads")
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    filename = models.CharField(max_length=255)
    #: Relative path inside a folder upload (e.g. "shards/model-00001-of-00002.safetensors").
    relative_path = models.CharField(max_length=500, blank=True)
    size = models.BigIntegerField()
    received = models.BigIntegerField(default=0)
    #: SHA-256 the client says the whole file has (optional); checked on completion.
    expected_sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=UploadStatus.choices, default=UploadStatus.RECEIVING)
    blob = models.ForeignKey(Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="uploads")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.received}/{self.size})"
