"""Features of a trained coder, described for people: statistics, top contexts, histogram, logit lens, label,
and the MLP neurons that implement each (weighted links: the ``IMPLEMENTED_BY`` edges of the circuit graph)."""

from __future__ import annotations

from django.db import models

from analysis.models.coders import Coder
from projects.tenancy import TenantModel


class Feature(TenantModel):
    """One latent of a coder."""

    tenant_field = "coder__run__organization"

    coder = models.ForeignKey(Coder, on_delete=models.CASCADE, related_name="features")
    index = models.PositiveIntegerField()
    frequency = models.FloatField(default=0.0)
    mean_activation = models.FloatField(default=0.0)
    max_activation = models.FloatField(default=0.0)
    #: ``{"edges": [...], "counts": [...]}`` over the tokens where the feature is active.
    histogram = models.JSONField(default=dict, blank=True)
    #: Strongest first: ``[{"value", "doc_id", "center", "tokens": [text], "activations": [float]}]``.
    contexts = models.JSONField(default=list, blank=True)
    #: ``{"promoted": [[token, logit], ...], "suppressed": [...]}`` through the teacher's unembedding.
    logit_lens = models.JSONField(default=dict, blank=True)
    label = models.CharField(max_length=300, blank=True)
    #: How the label was made (``contexts+logit-lens``, ``agent:<slug>``) and its score, when scored.
    label_method = models.CharField(max_length=100, blank=True)
    label_score = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["coder", "index"]
        constraints = [models.UniqueConstraint(fields=["coder", "index"], name="uniq_feature_index")]
        indexes = [models.Index(fields=["coder", "-frequency"], name="feature_by_frequency")]

    def __str__(self) -> str:
        return f"L{self.coder.layer} #{self.index}"

    @property
    def is_dead(self) -> bool:
        return self.frequency == 0


class FeatureNeuronLink(TenantModel):
    """How much one MLP neuron's activation tracks a feature's (signed Pearson correlation over captured tokens)."""

    tenant_field = "feature__coder__run__organization"

    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="neuron_links")
    layer = models.PositiveIntegerField()
    neuron = models.PositiveIntegerField()
    weight = models.FloatField()

    class Meta:
        ordering = ["feature", "-weight"]
        constraints = [models.UniqueConstraint(fields=["feature", "neuron"], name="uniq_feature_neuron")]
