"""REST API of features: /api/v1/orgs/<org>/features/?coder=<id> — sortable and filterable, as the browser."""

from __future__ import annotations

from rest_framework import mixins, serializers

from analysis.models import Feature, FeatureNeuronLink
from projects.api.base import OrgScopedViewSet

ORDERINGS = {"frequency": "-frequency", "max": "-max_activation", "mean": "-mean_activation", "index": "index"}


class NeuronLinkSerializer(serializers.ModelSerializer):
    class Meta:
        model = FeatureNeuronLink
        fields = ["layer", "neuron", "weight"]
        read_only_fields = fields


class FeatureSerializer(serializers.ModelSerializer):
    layer = serializers.IntegerField(source="coder.layer", read_only=True)
    neuron_links = NeuronLinkSerializer(many=True, read_only=True)

    class Meta:
        model = Feature
        fields = ["id", "coder", "layer", "index", "frequency", "mean_activation", "max_activation", "label",
                  "label_method", "label_score", "histogram", "contexts", "logit_lens", "neuron_links"]  # fmt: skip
        read_only_fields = fields


class FeatureViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Described features. Filter with `?coder=<id>`, `?layer=`, `?q=` (label text), `?min_frequency=`,
    `?alive=1` (fired at least once); order with `?sort=frequency|max|mean|index` (default frequency)."""

    model = Feature
    serializer_class = FeatureSerializer
    filter_params = {"coder": "coder_id", "layer": "coder__layer"}

    def get_queryset(self):
        queryset = super().get_queryset().select_related("coder").prefetch_related("neuron_links")
        query = self.request.query_params
        if query.get("q"):
            queryset = queryset.filter(label__icontains=query["q"])
        if query.get("alive") == "1":
            queryset = queryset.filter(frequency__gt=0)
        try:
            minimum = float(query.get("min_frequency") or 0)
        except ValueError:
            minimum = 0.0
        if minimum:
            queryset = queryset.filter(frequency__gte=minimum)
        return queryset.order_by(ORDERINGS.get(query.get("sort") or "", "-frequency"), "coder_id", "index")
