"""Student recipes: a versioned JSON document saying what of the teacher a student keeps, and how it is healed.

The document's shape and its validation live in ``distillation.engine.recipes``; this row adds who made it, from
which analysis and strategy, its estimates, and its lifecycle: proposed → approved → building → built / failed →
deployed. Only a proposed recipe is edited (each edit is a new version); an approved one is what gets built.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from distillation.models.importance import ImportanceAnalysis
from projects.models import LanguageModel, Organization, Project
from projects.tenancy import TenantModel


class RecipeStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    APPROVED = "approved", "Approved"
    BUILDING = "building", "Building"
    BUILT = "built", "Built"
    FAILED = "failed", "Failed"
    DEPLOYED = "deployed", "Deployed"


class Strategy(models.TextChoices):
    PROPOSAL = "proposal", "Proposed from the importance analysis"
    IMPORTANCE_RATIO = "importance_ratio", "By importance ratio"
    LAYER_COUNT = "layer_count", "By layer count"
    WEIGHT_RANGE = "weight_range", "By weight range"
    MANUAL = "manual", "Written by a person"
    BASELINE_MAGNITUDE = "baseline_magnitude", "Baseline: weight magnitude"
    BASELINE_GENERIC = "baseline_generic", "Baseline: Wanda scores from generic text"
    BASELINE_LAST_LAYERS = "baseline_last_layers", "Baseline: drop the last layers"
    BASELINE_LOW_INFLUENCE = "baseline_low_influence", "Baseline: drop the lowest-influence layers"


class Recipe(TenantModel):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="recipes")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="recipes")
    teacher = models.ForeignKey(LanguageModel, on_delete=models.PROTECT, related_name="recipes")
    analysis = models.ForeignKey(
        ImportanceAnalysis, null=True, blank=True, on_delete=models.SET_NULL, related_name="recipes"
    )
    name = models.CharField(max_length=200)
    strategy = models.CharField(max_length=24, choices=Strategy.choices, default=Strategy.MANUAL)
    version = models.PositiveIntegerField(default=1)
    #: The recipe itself (``distillation.engine.recipes``): layers, KV groups, neurons, calibration, quant types.
    document = models.JSONField(default=dict)
    #: ``{"params", "fraction", "gguf_bytes": {type: bytes}, "notes": [...]}``.
    estimates = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=RecipeStatus.choices, default=RecipeStatus.PROPOSED)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"

    @property
    def is_editable(self) -> bool:
        return self.status == RecipeStatus.PROPOSED
