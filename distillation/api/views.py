"""REST API of students: /api/v1/orgs/<org>/importance/, recipes/, builds/, distill/."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from distillation.actions import builds as build_actions
from distillation.actions import importance as importance_actions
from distillation.actions import recipes as recipe_actions
from distillation.models import Build, ImportanceAnalysis, Recipe, Strategy
from projects.actions import ActionError
from projects.api.base import OrgScopedViewSet
from projects.background import reap_stale_jobs
from projects.models import Dataset, LanguageModel


class ImportanceSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportanceAnalysis
        fields = ["id", "teacher", "torch_model", "dataset", "split", "token_budget", "seq_len", "batch_size",
                  "sample_windows", "status", "error", "arch", "summary", "n_tokens", "tokens_per_second", "device",
                  "job", "created_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class ImportanceCreateSerializer(serializers.Serializer):
    teacher = serializers.IntegerField()
    dataset = serializers.IntegerField(help_text="A ready domain dataset of the organisation.")
    token_budget = serializers.IntegerField(default=32_768)
    seq_len = serializers.IntegerField(default=256)
    batch_size = serializers.IntegerField(default=4)
    sample_windows = serializers.IntegerField(default=8)
    split = serializers.ChoiceField(choices=[("train", "train"), ("eval", "eval")], default="train")


class RecipeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recipe
        fields = ["id", "teacher", "analysis", "name", "strategy", "version", "status", "document", "estimates",
                  "approved_by", "approved_at", "created_at", "updated_at"]  # fmt: skip
        read_only_fields = fields


class RecipeEditSerializer(serializers.Serializer):
    document = serializers.JSONField(help_text="The whole recipe document (validated; a new version).")


class StrategySerializer(serializers.Serializer):
    analysis = serializers.IntegerField()
    strategy = serializers.ChoiceField(choices=[(s.value, s.label) for s in Strategy if s.value != Strategy.PROPOSAL
                                                and s.value != Strategy.MANUAL])  # fmt: skip
    ratio = serializers.FloatField(required=False)
    n_layers = serializers.IntegerField(required=False)
    low = serializers.FloatField(required=False)
    high = serializers.FloatField(required=False)


class BuildSerializer(serializers.ModelSerializer):
    class Meta:
        model = Build
        fields = ["id", "recipe", "status", "error", "curves", "steps_done", "steps_total", "tokens_per_second",
                  "timings", "student", "quantized", "report", "job", "created_at", "finished_at"]  # fmt: skip
        read_only_fields = fields


class DistillSerializer(serializers.Serializer):
    teacher = serializers.IntegerField()
    dataset = serializers.IntegerField()
    fraction = serializers.FloatField(
        default=0.55, min_value=0.05, max_value=1.0, help_text="The student's size: a fraction of the teacher's."
    )
    token_budget = serializers.IntegerField(default=32_768, help_text="Tokens the importance analysis reads.")
    seq_len = serializers.IntegerField(default=256)


class ImportanceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Importance analyses. Filter with `?teacher=<id>`, `?status=`. `POST` starts one (a job); when it completes
    it proposes three recipes (see `recipes/?analysis=<id>`)."""

    model = ImportanceAnalysis
    serializer_class = ImportanceSerializer
    filter_params = {"teacher": "teacher_id", "status": "status"}

    def get_queryset(self):
        reap_stale_jobs()
        return super().get_queryset()

    @extend_schema(request=ImportanceCreateSerializer, responses={201: ImportanceSerializer})
    def create(self, request, *args, **kwargs):
        data = ImportanceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        teacher, dataset = _teacher_and_dataset(self.org, values.pop("teacher"), values.pop("dataset"))
        analysis = importance_actions.do_start_importance(teacher, dataset, request.user, **values)
        return Response(ImportanceSerializer(analysis).data, status=status.HTTP_201_CREATED)


def _teacher_and_dataset(org: object, teacher_id: int, dataset_id: int) -> tuple[LanguageModel, Dataset]:
    teacher = LanguageModel.objects.for_org(org).filter(pk=teacher_id).first()
    if teacher is None:
        raise ActionError("No such model in this organisation.", field="teacher", code="not_found")
    dataset = Dataset.objects.for_org(org).filter(pk=dataset_id).first()
    if dataset is None:
        raise ActionError("No such dataset in this organisation.", field="dataset", code="not_found")
    return teacher, dataset


class RecipeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Recipes. Filter with `?teacher=<id>`, `?analysis=<id>`, `?status=`. `POST` `{analysis, strategy, …}` makes
    one by a strategy; `PATCH {id}/` `{document}` edits a proposed one (a new version); `POST {id}/approve/`;
    `POST {id}/build/` starts a build of an approved one."""

    model = Recipe
    serializer_class = RecipeSerializer
    filter_params = {"teacher": "teacher_id", "analysis": "analysis_id", "status": "status"}

    def get_queryset(self):
        if hasattr(self, "org"):
            build_actions.sync_deployed(self.org)
        return super().get_queryset().select_related("analysis")

    @extend_schema(request=StrategySerializer, responses={201: RecipeSerializer})
    def create(self, request, *args, **kwargs):
        data = StrategySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        analysis = ImportanceAnalysis.objects.for_org(self.org).filter(pk=values.pop("analysis")).first()
        if analysis is None or not analysis.is_complete:
            raise ActionError("No complete importance analysis with this id.", field="analysis", code="not_found")
        recipe = recipe_actions.do_recipe_by_strategy(analysis, request.user, values.pop("strategy"), **values)
        return Response(RecipeSerializer(recipe).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RecipeEditSerializer, responses=RecipeSerializer)
    def partial_update(self, request, *args, **kwargs):
        import json

        recipe = self.get_object()
        data = RecipeEditSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        recipe = recipe_actions.do_edit_recipe(recipe, request.user, json.dumps(data.validated_data["document"]))
        return Response(RecipeSerializer(recipe).data)

    @extend_schema(request=None, responses=RecipeSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, **kwargs):
        recipe = recipe_actions.do_approve_recipe(self.get_object(), request.user)
        return Response(RecipeSerializer(recipe).data)

    @extend_schema(request=None, responses={201: BuildSerializer})
    @action(detail=True, methods=["post"])
    def build(self, request, **kwargs):
        build = build_actions.do_build(self.get_object(), request.user)
        return Response(BuildSerializer(build).data, status=status.HTTP_201_CREATED)


class BuildViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Builds of students. Filter with `?recipe=<id>`, `?status=`."""

    model = Build
    serializer_class = BuildSerializer
    filter_params = {"recipe": "recipe_id", "status": "status"}

    def get_queryset(self):
        reap_stale_jobs()
        return super().get_queryset()


class DistillViewSet(OrgScopedViewSet):
    """`POST` `{teacher, dataset, fraction}`: the one-shot path — an importance analysis, then a recipe at
    `fraction` of the teacher's parameters approved in your name and built, with no further step."""

    model = ImportanceAnalysis
    serializer_class = ImportanceSerializer

    @extend_schema(request=DistillSerializer, responses={201: ImportanceSerializer})
    def create(self, request, *args, **kwargs):
        data = DistillSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        teacher, dataset = _teacher_and_dataset(self.org, values.pop("teacher"), values.pop("dataset"))
        analysis = importance_actions.do_start_importance(
            teacher, dataset, request.user, token_budget=values["token_budget"], seq_len=values["seq_len"],
            then_build=values["fraction"],
        )  # fmt: skip
        return Response(ImportanceSerializer(analysis).data, status=status.HTTP_201_CREATED)
