"""Content-addressed files (named by SHA-256, deduplicated); how they are written is :mod:`projects.blobs`."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Blob(models.Model):
    """A file stored once, named by the SHA-256 of its bytes (content addressing).

    Blobs are shared: two uploads of the same bytes, in any organisation, are one blob.
    Nobody reaches a blob directly; tenants reach it through their own rows that
    reference it (models, datasets, artifacts), so scoping stays with those rows.
    """

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    #: Name in Django's default storage (blobs/ab/cd/<sha256>).
    storage_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.sha256[:12]}… ({self.size} bytes)"

    @staticmethod
    def name_for(sha256: str) -> str:
        return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"
