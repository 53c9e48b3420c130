"""Datasets: domain text, control text and prompt pairs uploaded into a project.

How files become datasets is in ``projects.actions.datasets`` (actions), ``projects.jobs.datasets``
(jobs) and ``projects.engine.datasets`` (the reading itself).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from projects.models.blobs import Blob
from projects.models.jobs import Job
from projects.models.projects import Project
from projects.models.tenancy import Organization
from projects.tenancy import TenantModel


class DatasetRole(models.TextChoices):
    DOMAIN = "domain", "Domain (what the student must keep)"
    CONTROL = "control", "Control (off-domain text the student may lose)"
    PROMPT_PAIRS = "prompt_pairs", "Prompt pairs (causal tracing)"


class DatasetFormat(models.TextChoices):
    TXT = "txt", "Plain text"
    JSONL = "jsonl", "JSON Lines"
    CSV = "csv", "CSV"
    ZIP = "zip", "Zip of text files"


class DatasetStatus(models.TextChoices):
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Dataset(TenantModel):
    """An uploaded dataset and what its processing found.

    The upload (``source_blob``) is read once by the ``datasets.process`` job into
    ``documents_blob``: JSONL, one ``{"id", "text", "source"}`` per line (prompt pairs add
    ``clean``, ``corrupted``, ``target``, ``distractor``), which is the only form later
    analysis reads. A document's split is a pure function of (``split_seed``,
    ``split_ratio``, its ``id``): see ``projects.engine.datasets.split_of``.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="datasets")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=12, choices=DatasetRole.choices, default=DatasetRole.DOMAIN)
    format = models.CharField(max_length=8, choices=DatasetFormat.choices)
    status = models.CharField(max_length=10, choices=DatasetStatus.choices, default=DatasetStatus.PROCESSING)
    #: The uploaded file, as it arrived.
    source_blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="dataset_sources")
    source_filename = models.CharField(max_length=255, blank=True)
    #: How the file is read: text_field, template, column, delimiter, unit (engine DatasetOptions).
    options = models.JSONField(default=dict, blank=True)
    #: The encoding detected (e.g. "utf-8", "cp1252"; per file for a zip).
    encoding = models.CharField(max_length=200, blank=True)
    #: The normalised documents (JSONL), once processed.
    documents_blob = models.ForeignKey(
        Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="dataset_documents"
    )
    document_count = models.BigIntegerField(default=0)
    character_count = models.BigIntegerField(default=0)
    #: None until counted with a tokenizer (never estimated).
    token_count = models.BigIntegerField(null=True, blank=True)
    #: Which tokenizer counted ``token_count`` (a description people read).
    tokenizer = models.CharField(max_length=300, blank=True)
    #: Fraction of documents in the train split.
    split_ratio = models.FloatField(default=0.9)
    split_seed = models.BigIntegerField(default=0)
    train_count = models.BigIntegerField(default=0)
    eval_count = models.BigIntegerField(default=0)
    #: {"characters": histogram, "tokens": histogram, "skipped": n, "files": n} (see LengthHistogram.as_dict).
    stats = models.JSONField(default=dict, blank=True)
    #: The first documents, cut to 500 characters each.
    preview = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    #: The latest job that worked on this dataset (processing or token counting).
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="uniq_dataset_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_ready(self) -> bool:
        return self.status == DatasetStatus.READY

    @property
    def split(self) -> dict:
        return {"ratio": self.split_ratio, "seed": self.split_seed, "train": self.train_count, "eval": self.eval_count}
