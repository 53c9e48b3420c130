"""REST API of datasets: /api/v1/orgs/<org>/datasets/."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from projects.actions import ActionError
from projects.actions import datasets as dataset_actions
from projects.api.base import OrgScopedViewSet
from projects.api.serializers import JobSerializer
from projects.background import reap_stale_jobs
from projects.engine.datasets import FORMATS
from projects.models import Dataset, DatasetRole, Upload


class DatasetSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    status = serializers.CharField(read_only=True)
    error = serializers.CharField(read_only=True)
    split = serializers.SerializerMethodField()
    source_sha256 = serializers.CharField(source="source_blob_id", read_only=True)
    documents_sha256 = serializers.CharField(source="documents_blob_id", read_only=True, allow_null=True)
    job = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "project",
            "name",
            "role",
            "format",
            "status",
            "error",
            "source_filename",
            "encoding",
            "options",
            "document_count",
            "character_count",
            "token_count",
            "tokenizer",
            "split",
            "stats",
            "source_sha256",
            "documents_sha256",
            "job",
            "created_at",
        ]
        read_only_fields = fields

    def get_split(self, dataset) -> dict:
        return dataset.split


class DatasetCreateSerializer(serializers.Serializer):
    upload = serializers.UUIDField(
        help_text="A completed upload of this organisation; it becomes the dataset (consumed)."
    )
    name = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="Defaults to the file name without its extension.",
    )
    role = serializers.ChoiceField(choices=DatasetRole.choices, default=DatasetRole.DOMAIN)
    format = serializers.ChoiceField(
        choices=[(f, f) for f in FORMATS],
        required=False,
        allow_blank=True,
        default="",
        help_text="Defaults to what the file name says (.txt, .jsonl, .csv/.tsv, .zip).",
    )
    options = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        default=dict,
        help_text='jsonl: `text_field` or `template` (e.g. "Question: {question}\\nAnswer: {answer}"); '
        "csv: `column` or `template`, `delimiter`; txt and zip: `unit` (line, paragraph, file).",
    )
    split_ratio = serializers.FloatField(
        required=False, default=0.9, help_text="Fraction of documents in the train split."
    )
    split_seed = serializers.IntegerField(required=False, default=0, min_value=0)


class SplitSerializer(serializers.Serializer):
    ratio = serializers.FloatField(help_text="Fraction of documents in the train split, between 0 and 1.")
    seed = serializers.IntegerField(min_value=0, default=0)


class CountTokensSerializer(serializers.Serializer):
    model = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="A model of the dataset's project whose tokenizer counts (default: the project's first).",
    )
    tokenizer_upload = serializers.UUIDField(
        required=False, allow_null=True, help_text="Or: a completed upload of a tokenizer.json in the same project."
    )


class DatasetPreviewSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    documents = serializers.ListField(
        child=serializers.DictField(),
        help_text="The first 20 documents: id, source, text (≤ 500 characters), chars, truncated.",
    )


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet):
    """Datasets of the organisation's projects. Filter with `?project=<slug>`, `?role=`, `?status=`.

    `POST` `{upload, role, options…}` turns a completed upload (see `uploads/`) into a dataset:
    cheap checks answer at once (a binary file, a zip bomb, a field that is not there: 400, and a
    refused file is deleted); reading every document runs as a job (`job` in the answer).
    """

    model = Dataset
    serializer_class = DatasetSerializer

    filter_params = {"project": "project__slug", "role": "role", "status": "status"}

    def get_queryset(self):
        reap_stale_jobs()
        return super().get_queryset().select_related("project", "job")

    @extend_schema(request=DatasetCreateSerializer, responses={201: DatasetSerializer})
    def create(self, request, *args, **kwargs):
        data = DatasetCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        upload = (
            Upload.objects.for_org(self.org).select_related("project", "blob").filter(pk=values.pop("upload")).first()
        )
        if upload is None:
            raise ActionError("No such upload in this organisation.", field="upload", code="not_found")
        dataset = dataset_actions.do_create_dataset(upload, request.user, **values)
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        dataset_actions.do_delete_dataset(instance)

    @extend_schema(responses=DatasetPreviewSerializer)
    @action(detail=True, methods=["get"])
    def preview(self, request, **kwargs):
        dataset = self.get_object()
        return Response({"id": dataset.pk, "status": dataset.status, "documents": dataset.preview})

    @extend_schema(request=SplitSerializer, responses=DatasetSerializer)
    @action(detail=True, methods=["post"])
    def split(self, request, **kwargs):
        dataset = self.get_object()
        data = SplitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = dataset_actions.do_set_split(dataset, data.validated_data["ratio"], data.validated_data["seed"])
        return Response(DatasetSerializer(dataset).data)

    @extend_schema(request=CountTokensSerializer, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def count_tokens(self, request, **kwargs):
        dataset = self.get_object()
        data = CountTokensSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = dataset_actions.do_count_tokens(
            dataset,
            request.user,
            model=data.validated_data.get("model"),
            tokenizer_upload=data.validated_data.get("tokenizer_upload"),
        )
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)
