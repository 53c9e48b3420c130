"""REST API of activation captures: /api/v1/orgs/<org>/captures/ — start one, follow it, read what it holds."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from analysis.actions import captures as capture_actions
from analysis.models import Capture
from projects.actions import ActionError
from projects.api.base import OrgScopedViewSet
from projects.background import reap_stale_jobs
from projects.models import Dataset, LanguageModel


class CaptureSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Capture
        fields = [
            "id", "project", "teacher", "torch_model", "dataset", "split", "hookpoints", "layers", "token_budget",
            "seq_len", "batch_size", "tokens_per_shard", "dtype", "d_model", "estimated_bytes", "status", "error",
            "n_tokens", "n_shards", "bytes", "tokens_per_second", "device", "shards_released_at", "job", "created_at",
            "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class CaptureCreateSerializer(serializers.Serializer):
    teacher = serializers.IntegerField(help_text="A ready model of the organisation (llama family).")
    dataset = serializers.IntegerField(help_text="A ready dataset of the same organisation.")
    hookpoints = serializers.CharField(
        default=capture_actions.DEFAULT_HOOKPOINTS, help_text="Module-name patterns, e.g. model.layers.*.mlp"
    )
    token_budget = serializers.IntegerField(default=65_536)
    seq_len = serializers.IntegerField(default=256)
    batch_size = serializers.IntegerField(default=8)
    split = serializers.ChoiceField(choices=["train", "eval"], default="train")
    dtype = serializers.ChoiceField(choices=list(capture_actions.DTYPES), default="float16")
    tokens_per_shard = serializers.IntegerField(default=8192)


class CapturePlanSerializer(serializers.Serializer):
    teacher = serializers.IntegerField()
    hookpoints = serializers.CharField(default=capture_actions.DEFAULT_HOOKPOINTS)
    token_budget = serializers.IntegerField(default=65_536, min_value=1)


class CaptureViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Captures of the organisation's teachers. Filter with `?teacher=<id>`, `?dataset=<id>`, `?status=`.

    `POST` starts one (a job; `job` in the answer). Everything is checked first — the teacher's architecture and
    Hugging Face copy, the dataset, the patterns, the budget, the estimated disk against the free disk — and a
    refused capture keeps nothing. `POST plan/` answers what a capture would take without starting it;
    `POST {id}/release-shards/` frees the disk of its shards once nothing reads them (coders and features stay).
    """

    model = Capture
    serializer_class = CaptureSerializer
    filter_params = {"teacher": "teacher_id", "dataset": "dataset_id", "status": "status"}

    def get_queryset(self):
        reap_stale_jobs()
        return super().get_queryset().select_related("project")

    def _teacher(self, pk: int) -> LanguageModel:
        teacher = LanguageModel.objects.for_org(self.org).filter(pk=pk).first()
        if teacher is None:
            raise ActionError("No such model in this organisation.", field="teacher", code="not_found")
        return teacher

    @extend_schema(request=CaptureCreateSerializer, responses={201: CaptureSerializer})
    def create(self, request, *args, **kwargs):
        data = CaptureCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        teacher = self._teacher(values.pop("teacher"))
        dataset = Dataset.objects.for_org(self.org).filter(pk=values.pop("dataset")).first()
        if dataset is None:
            raise ActionError("No such dataset in this organisation.", field="dataset", code="not_found")
        capture = capture_actions.do_start_capture(teacher, dataset, request.user, **values)
        return Response(CaptureSerializer(capture).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=CaptureSerializer)
    @action(detail=True, methods=["post"], url_path="release-shards")
    def release_shards(self, request, **kwargs):
        """Free the disk of the capture's shards; its coders, metrics and features stay (409 while a job reads it)."""
        capture = self.get_object()
        freed = capture_actions.do_release_shards(capture, request.user)
        return Response(CaptureSerializer(capture).data | {"freed_bytes": freed})

    @extend_schema(request=CapturePlanSerializer, responses=dict)
    @action(detail=False, methods=["post"])
    def plan(self, request, **kwargs):
        data = CapturePlanSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        teacher = self._teacher(data.validated_data["teacher"])
        patterns = capture_actions.parse_patterns(data.validated_data["hookpoints"])
        return Response(capture_actions.plan(teacher, patterns, data.validated_data["token_budget"]))
