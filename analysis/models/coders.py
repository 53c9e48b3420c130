"""Sparse-coder training runs over a capture and the coders they made (one per layer and kind).

A run trains every requested ``(layer, kind)`` pair in one pass over the capture's shards
(:func:`analysis.engine.training.train_sparse_coders`), so a skip transcoder and its baselines — a transcoder
without the skip term and a sparse autoencoder — see the same tokens. Each :class:`Coder` keeps its weights as
blobs (``config.json`` + ``.safetensors``) and its metrics on the held-out tokens.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from analysis.models.captures import Capture
from projects.models import Blob, Job, Organization
from projects.tenancy import TenantModel


class CoderKind(models.TextChoices):
    SKIP_TRANSCODER = "skip_transcoder", "Skip transcoder"
    TRANSCODER = "transcoder", "Transcoder (no skip)"
    SAE = "sae", "Sparse autoencoder"


class CoderOptimizer(models.TextChoices):
    SIGNUM = "signum", "Signum (schedule-free sign descent, sparsify's default)"
    ADAM = "adam", "Adam"


class CoderSource(models.TextChoices):
    SHARDS = "shards", "The capture's shards"
    FORWARD = "forward", "The teacher's forward pass (no shards: for when the disk is short)"


class CoderRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    TRAINING = "training", "Training"
    EVALUATING = "evaluating", "Evaluating"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class CoderRun(TenantModel):
    """One training run: its settings, live curves and outcome."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="coder_runs")
    capture = models.ForeignKey(Capture, on_delete=models.PROTECT, related_name="coder_runs")
    #: Where training reads activations: the capture's shards, or the teacher's forward pass over the capture's
    #: dataset split after the capture's tokens (the whole capture is then the held-out set).
    source = models.CharField(max_length=10, choices=CoderSource.choices, default=CoderSource.SHARDS)
    layers = models.JSONField(default=list)
    kinds = models.JSONField(default=list)
    expansion = models.PositiveIntegerField(default=8)
    k = models.PositiveIntegerField(default=32)
    optimizer = models.CharField(max_length=10, choices=CoderOptimizer.choices, default=CoderOptimizer.SIGNUM)
    #: Learning rate (None: the optimiser's default scaled to the width, ``analysis.engine.training.default_lr``).
    lr = models.FloatField(null=True, blank=True)
    batch_size = models.PositiveIntegerField(default=1024)
    #: Training tokens per coder (None: one pass over the capture's training tokens).
    token_budget = models.PositiveIntegerField(null=True, blank=True)
    held_out_tokens = models.PositiveIntegerField(default=0)

    status = models.CharField(max_length=10, choices=CoderRunStatus.choices, default=CoderRunStatus.QUEUED)
    error = models.TextField(blank=True)
    #: ``{"<layer>:<kind>": [[tokens, fvu], ...]}``, thinned to a few hundred points per curve.
    curves = models.JSONField(default=dict, blank=True)
    tokens_trained = models.BigIntegerField(default=0)
    tokens_per_second = models.FloatField(default=0.0)
    #: Next-token cross-entropy of the unmodified teacher on the held-out tokens.
    clean_ce = models.FloatField(null=True, blank=True)

    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Coder run #{self.pk} on capture #{self.capture_id}"


class Coder(TenantModel):
    """One trained coder of a run: a layer and a kind, its files and its held-out metrics."""

    tenant_field = "run__organization"

    run = models.ForeignKey(CoderRun, on_delete=models.CASCADE, related_name="coders")
    layer = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=CoderKind.choices)
    d_sae = models.PositiveIntegerField()
    config_blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="coder_configs")
    weights_blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="coder_weights")
    fvu = models.FloatField(null=True, blank=True)
    l0 = models.FloatField(null=True, blank=True)
    dead_fraction = models.FloatField(null=True, blank=True)
    kl = models.FloatField(null=True, blank=True)
    ce_increase = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["layer", "kind"]
        constraints = [models.UniqueConstraint(fields=["run", "layer", "kind"], name="uniq_coder_layer_kind")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} L{self.layer}"
