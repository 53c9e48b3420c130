"""REST API of training runs, their coders and exports: /api/v1/orgs/<org>/coder-runs/, coders/, coder-exports/."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from analysis.actions import coders as coder_actions
from analysis.actions import exports as export_actions
from analysis.actions import features as feature_actions
from analysis.actions import labels as label_actions
from analysis.models import (
    Capture,
    Coder,
    CoderExport,
    CoderKind,
    CoderOptimizer,
    CoderRun,
    CoderSource,
    ExportFormat,
    ExportStatus,
)
from projects import blobs
from projects.actions import ActionError
from projects.api.base import OrgScopedViewSet
from projects.api.serializers import JobSerializer
from projects.background import reap_stale_jobs
from runtime.models import Agent


class CoderSerializer(serializers.ModelSerializer):
    config_sha256 = serializers.CharField(source="config_blob_id", read_only=True)
    weights_sha256 = serializers.CharField(source="weights_blob_id", read_only=True)

    class Meta:
        model = Coder
        fields = ["id", "run", "layer", "kind", "d_sae", "fvu", "l0", "dead_fraction", "kl", "ce_increase",
                  "config_sha256", "weights_sha256"]  # fmt: skip
        read_only_fields = fields


class CoderRunSerializer(serializers.ModelSerializer):
    coders = CoderSerializer(many=True, read_only=True)

    class Meta:
        model = CoderRun
        fields = [
            "id", "capture", "source", "layers", "kinds", "expansion", "k", "optimizer", "lr", "batch_size",
            "token_budget", "held_out_tokens", "status", "error", "curves", "tokens_trained", "tokens_per_second",
            "clean_ce", "job", "created_at", "finished_at", "coders",
        ]  # fmt: skip
        read_only_fields = fields


class CoderRunCreateSerializer(serializers.Serializer):
    capture = serializers.IntegerField(help_text="A complete capture of the organisation.")
    layers = serializers.ListField(
        child=serializers.IntegerField(min_value=0),
        required=False,
        allow_null=True,
        help_text="Default: every layer of the capture.",
    )
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=CoderKind.choices),
        required=False,
        allow_null=True,
        help_text="Default: the skip transcoder and both baselines.",
    )
    expansion = serializers.IntegerField(default=8)
    k = serializers.IntegerField(default=32)
    optimizer = serializers.ChoiceField(choices=CoderOptimizer.choices, default=CoderOptimizer.SIGNUM)
    source = serializers.ChoiceField(choices=CoderSource.choices, default=CoderSource.SHARDS)
    lr = serializers.FloatField(
        required=False, allow_null=True, default=None, help_text="Default: the optimiser's, scaled to the width."
    )
    batch_size = serializers.IntegerField(default=1024)
    token_budget = serializers.IntegerField(required=False, allow_null=True, default=None)
    held_out_tokens = serializers.IntegerField(required=False, allow_null=True, default=None)


class CoderRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Training runs of sparse coders. Filter with `?capture=<id>`, `?status=`. `POST` starts one (a job)."""

    model = CoderRun
    serializer_class = CoderRunSerializer
    filter_params = {"capture": "capture_id", "status": "status"}

    def get_queryset(self):
        reap_stale_jobs()
        return super().get_queryset().prefetch_related("coders")

    @extend_schema(request=CoderRunCreateSerializer, responses={201: CoderRunSerializer})
    def create(self, request, *args, **kwargs):
        data = CoderRunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        capture = Capture.objects.for_org(self.org).filter(pk=values.pop("capture")).first()
        if capture is None:
            raise ActionError("No such capture in this organisation.", field="capture", code="not_found")
        run = coder_actions.do_start_coder_run(capture, request.user, **values)
        return Response(CoderRunSerializer(run).data, status=status.HTTP_201_CREATED)


class TextSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=feature_actions.TEST_BOX_MAX_CHARS, trim_whitespace=False)


class LabelSerializer(serializers.Serializer):
    agent = serializers.IntegerField(help_text="A live agent (or a remote one) of the organisation.")
    limit = serializers.IntegerField(default=20, help_text="How many of the most frequent features to label.")


class ExportCreateSerializer(serializers.Serializer):
    run = serializers.IntegerField(help_text="A complete training run of the organisation.")
    format = serializers.ChoiceField(choices=ExportFormat.choices)
    kind = serializers.ChoiceField(choices=CoderKind.choices, default=CoderKind.SKIP_TRANSCODER)


class CoderExportSerializer(serializers.ModelSerializer):
    size = serializers.IntegerField(source="blob.size", read_only=True, allow_null=True)
    sha256 = serializers.CharField(source="blob_id", read_only=True, allow_null=True)

    class Meta:
        model = CoderExport
        fields = ["id", "run", "format", "kind", "status", "error", "filename", "size", "sha256", "job",
                  "created_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class CoderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Trained coders with their held-out metrics. Filter with `?run=<id>`, `?layer=`, `?kind=`.

    `POST {id}/describe/` describes every feature (a job); `POST {id}/test/` `{text}` runs the teacher and the
    coder on a text in a worker — the job's `result` lists the features firing on each token; `POST {id}/label/`
    `{agent, limit}` asks an agent to label the most frequent features, each label scored (a job).
    """

    model = Coder
    serializer_class = CoderSerializer
    filter_params = {"run": "run_id", "layer": "layer", "kind": "kind"}

    def get_queryset(self):
        return super().get_queryset().select_related("run__capture")

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def describe(self, request, **kwargs):
        job = feature_actions.do_describe_features(self.get_object(), request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TextSerializer, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, **kwargs):
        coder = self.get_object()
        data = TextSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = feature_actions.do_test_text(coder, request.user, data.validated_data["text"])
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=LabelSerializer, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def label(self, request, **kwargs):
        coder = self.get_object()
        data = LabelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent = Agent.objects.for_org(self.org).filter(pk=data.validated_data["agent"]).first()
        if agent is None:
            raise ActionError("No such agent in this organisation.", field="agent", code="not_found")
        job = label_actions.do_label_features(coder, request.user, agent, limit=data.validated_data["limit"])
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class CoderExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Exports of a run's coders for circuit-tracer or SAELens. `POST` `{run, format, kind}` starts one (a job);
    `GET {id}/download/` gives the zip once `status` is `complete` (409 before)."""

    model = CoderExport
    serializer_class = CoderExportSerializer
    filter_params = {"run": "run_id", "status": "status"}

    def get_queryset(self):
        reap_stale_jobs()
        return super().get_queryset().select_related("blob")

    @extend_schema(request=ExportCreateSerializer, responses={201: CoderExportSerializer})
    def create(self, request, *args, **kwargs):
        data = ExportCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        run = CoderRun.objects.for_org(self.org).select_related("capture__teacher").filter(pk=values.pop("run"))
        if not run.exists():
            raise ActionError("No such training run in this organisation.", field="run", code="not_found")
        export = export_actions.do_export_coders(run.get(), request.user, **values)
        return Response(CoderExportSerializer(export).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "application/zip"): bytes})
    @action(detail=True, methods=["get"])
    def download(self, request, **kwargs):
        export = self.get_object()
        if export.status != ExportStatus.COMPLETE or export.blob is None:
            raise ActionError(f"This export is {export.status}, not complete.", code="conflict")
        return FileResponse(open(blobs.local_path(export.blob), "rb"), as_attachment=True, filename=export.filename)
