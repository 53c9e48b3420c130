"""REST API of models: create from uploads, inspect, list tensors, compare, download files."""

from __future__ import annotations

from django.http import FileResponse, Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from projects import blobs
from projects.actions import ActionError
from projects.actions import conversion as conversion_actions
from projects.actions import teachers as teacher_actions
from projects.api.base import OrgScopedViewSet
from projects.api.serializers import JobSerializer
from projects.models import LanguageModel, ModelFile, ModelFormat, Project, TensorRecord, Upload


class ModelFileSerializer(serializers.ModelSerializer):
    size = serializers.IntegerField(source="blob.size")
    sha256 = serializers.CharField(source="blob_id")

    class Meta:
        model = ModelFile
        fields = ["path", "size", "sha256"]


class LanguageModelSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    files = ModelFileSerializer(many=True, read_only=True)

    class Meta:
        model = LanguageModel
        fields = [
            "id",
            "project",
            "name",
            "role",
            "format",
            "status",
            "error",
            "architecture",
            "parameter_count",
            "size_bytes",
            "file_type",
            "metadata",
            "capabilities",
            "warnings",
            "derived_from",
            "files",
            "created_at",
        ]
        read_only_fields = fields


class LanguageModelCreateSerializer(serializers.Serializer):
    project = serializers.SlugField()
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    uploads = serializers.ListField(
        child=serializers.UUIDField(),
        min_length=1,
        help_text="Ids of completed uploads: one GGUF file, the files of a Hugging Face folder, or one .zip of such a "
        "folder "
        "(unpacked by a job: the answer is then 202 with the job, whose artifact is the model).",
    )


class ConversionRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=ModelFormat.choices,
        help_text="The target: `safetensors` (a float32 Hugging Face copy of a GGUF) or `gguf`.",
    )
    outtype = serializers.ChoiceField(
        choices=["f32", "f16", "bf16", "q8_0"], required=False, help_text="GGUF only: the tensor type (default f16)."
    )


class ConversionSerializer(serializers.Serializer):
    model = LanguageModelSerializer(allow_null=True, help_text="The converted copy, when it exists already.")
    job = JobSerializer(allow_null=True, help_text="The job making the copy, when it does not exist yet.")


class TensorSerializer(serializers.ModelSerializer):
    file = serializers.CharField(source="file.path")

    class Meta:
        model = TensorRecord
        fields = ["name", "file", "layer", "component", "shape", "dtype", "n_params", "offset", "n_bytes", "sha256"]


class LanguageModelViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet
):
    """Models in the organisation's projects. Filter with `?project=<slug>`, `?status=`, `?role=`."""

    model = LanguageModel
    serializer_class = LanguageModelSerializer

    filter_params = {"status": "status", "role": "role", "format": "format", "project": "project__slug"}

    def get_queryset(self):
        return super().get_queryset().select_related("project").prefetch_related("files__blob")

    @extend_schema(request=LanguageModelCreateSerializer, responses={201: LanguageModelSerializer, 202: JobSerializer})
    def create(self, request, *args, **kwargs):
        """Create a model from uploads: 201 with the model; for a .zip, 202 with the job that unpacks it."""
        data = LanguageModelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = Project.objects.for_org(self.org).filter(slug=data.validated_data["project"]).first()
        if project is None:
            raise ActionError("No such project in this organisation.", field="project", code="not_found")
        ids = data.validated_data["uploads"]
        uploads = list(Upload.objects.for_org(self.org).filter(pk__in=ids).select_related("blob"))
        if len(uploads) != len(set(ids)):
            raise ActionError("Some uploads do not exist in this organisation.", field="uploads", code="not_found")
        name = data.validated_data["name"]
        if len(uploads) == 1 and teacher_actions.is_model_archive(uploads[0]):
            job = teacher_actions.do_start_model_from_archive(project, request.user, name=name, upload=uploads[0])
            return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        model = teacher_actions.do_create_model_from_uploads(project, request.user, name=name, uploads=uploads)
        return Response(LanguageModelSerializer(model).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        teacher_actions.do_delete_model(instance)

    @extend_schema(
        parameters=[OpenApiParameter("layer", int), OpenApiParameter("component", str)],
        responses=TensorSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def tensors(self, request, **kwargs):
        model = self.get_object()
        tensors = model.tensors.select_related("file")
        if request.query_params.get("layer") not in (None, ""):
            try:
                tensors = tensors.filter(layer=int(request.query_params["layer"]))
            except ValueError:
                raise ActionError("`layer` must be a whole number.", field="layer") from None
        if request.query_params.get("component"):
            tensors = tensors.filter(component=request.query_params["component"])
        page = self.paginate_queryset(tensors)
        return self.get_paginated_response(TensorSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("with", int, required=True, description="The other model's id.")], responses=dict
    )
    @action(detail=True, methods=["get"])
    def compare(self, request, **kwargs):
        model = self.get_object()
        other_id = request.query_params.get("with", "")
        if not other_id.isdigit():
            raise ActionError("Name the model to compare with: `?with=<id>`.", field="with")
        other = self.get_queryset().filter(pk=int(other_id)).first()
        if other is None:
            raise ActionError(f"There is no model {other_id} in this organisation.", field="with", code="not_found")
        return Response(teacher_actions.comparison_of(model, other))

    @extend_schema(
        request=ConversionRequestSerializer, responses={200: ConversionSerializer, 202: ConversionSerializer}
    )
    @action(detail=True, methods=["post"])
    def convert(self, request, **kwargs):
        """The model in the other format: 200 with the copy when it exists (done once), else 202 with the job."""
        model = self.get_object()
        data = ConversionRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        requested = conversion_actions.do_request_conversion(
            model, request.user, data.validated_data["format"], outtype=data.validated_data.get("outtype")
        )
        body = {
            "model": LanguageModelSerializer(requested.derivative).data if requested.derivative else None,
            "job": JobSerializer(requested.job).data if requested.job else None,
        }
        return Response(body, status=status.HTTP_200_OK if requested.derivative else status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"], url_path=r"files/(?P<path>.+)")
    def download(self, request, path: str, **kwargs):
        model = self.get_object()
        file = model.files.select_related("blob").filter(path=path).first()
        if file is None:
            raise Http404
        return FileResponse(
            open(blobs.local_path(file.blob), "rb"), as_attachment=True, filename=path.rsplit("/", 1)[-1]
        )
