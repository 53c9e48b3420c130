"""Pages of importance analyses: the students home, starting an analysis, an analysis's charts."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse

from distillation.actions import builds as build_actions
from distillation.actions import importance as importance_actions
from distillation.models import Build, ImportanceAnalysis, Recipe
from projects.actions import ActionError
from projects.models import Dataset, DatasetRole, DatasetStatus, LanguageModel, ModelStatus
from projects.views.base import OrgPageView, whole_number

BAR_W, BAR_H = 16, 120


def layer_bars(values: list[float]) -> list[dict]:
    """SVG bars (x, y, height) for one value per layer, the largest value BAR_H high."""
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    bars = []
    for i, v in enumerate(values):
        h = round(BAR_H * max(v or 0.0, 0.0) / top, 1)
        bars.append({"layer": i, "value": v, "x": i * (BAR_W + 2), "y": round(BAR_H - h, 1), "h": h})
    return bars


def heatmap(rows: list[list[float]]) -> dict:
    """Cells of a layers × heads heatmap, opacity by value (the largest is 1)."""
    top = max((v for row in rows for v in row), default=0.0) or 1.0
    cells = [
        {"layer": i, "head": j, "value": v, "x": j * 22, "y": i * 12, "alpha": round(max(v, 0.0) / top, 3)}
        for i, row in enumerate(rows)
        for j, v in enumerate(row)
    ]
    return {"cells": cells, "w": 22 * max((len(r) for r in rows), default=0), "h": 12 * len(rows)}


def box_rows(per_layer: list[dict], width: int = 360) -> list[dict]:
    """One box plot per layer of its neuron scores (5th–95th percentile whiskers, quartile box, median), on a
    scale shared by every layer."""
    top = max((row.get("p95") or 0.0 for row in per_layer), default=0.0) or 1.0

    def x(v: float | None) -> float:
        return round(width * min(max(v or 0.0, 0.0), top) / top, 1)

    return [
        {"layer": i, "y": i * 12, "lo": x(r.get("p5")), "q1": x(r.get("p25")), "med": x(r.get("median")),
         "q3": x(r.get("p75")), "hi": x(r.get("p95")), "box_w": round(x(r.get("p75")) - x(r.get("p25")), 1), **r}
        for i, r in enumerate(per_layer)
    ]  # fmt: skip


class StudentsHomeView(OrgPageView):
    """Importance analyses, recipes and builds of the organisation."""

    template_name = "distillation/home.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        build_actions.sync_deployed(self.org)
        context["analyses"] = self.scoped(ImportanceAnalysis).select_related("teacher", "dataset", "job")[:50]
        context["recipes"] = self.scoped(Recipe).select_related("teacher", "analysis")[:100]
        context["builds"] = self.scoped(Build).select_related("recipe", "student", "job")[:50]
        return context


class ImportanceCreateView(OrgPageView):
    template_name = "distillation/importance_create.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        teachers = self.scoped(LanguageModel).filter(status=ModelStatus.READY).select_related("project")
        context["teachers"] = [t for t in teachers if t.can("analysis")]
        ready = self.scoped(Dataset).filter(status=DatasetStatus.READY).select_related("project")
        context["datasets"] = sorted(ready, key=lambda d: (d.role != DatasetRole.DOMAIN, d.name))  # domain first
        defaults = {"token_budget": 32_768, "seq_len": 256, "batch_size": 4, "sample_windows": 8}
        context["values"] = {**defaults, **self.request.GET.dict()}
        return context

    def post(self, request):
        data = request.POST
        try:
            teacher = self.scoped(LanguageModel).filter(pk=whole_number(data.get("teacher"), 0)).first()
            dataset = self.scoped(Dataset).filter(pk=whole_number(data.get("dataset"), 0)).first()
            if teacher is None or dataset is None:
                raise ActionError("Choose a teacher and a dataset of this organisation.")
            analysis = importance_actions.do_start_importance(
                teacher,
                dataset,
                request.user,
                token_budget=whole_number(data.get("token_budget"), 32_768),
                seq_len=whole_number(data.get("seq_len"), 256),
                batch_size=whole_number(data.get("batch_size"), 4),
                sample_windows=whole_number(data.get("sample_windows"), 8),
                split=data.get("split") or "train",
            )
        except ActionError as error:
            query = urlencode({k: v for k, v in data.items() if k != "csrfmiddlewaretoken"})
            back = reverse("importance-create", kwargs={"org_slug": self.org.slug})
            return self.action_failed(error, f"{back}?{query}")
        messages.success(request, "Importance analysis started: its progress shows below.")
        return redirect("importance-detail", org_slug=self.org.slug, analysis_id=analysis.pk)


class ImportanceDetailView(OrgPageView):
    """An analysis: layer bars, the heads × layers heatmap, neuron score distributions; its proposed recipes."""

    template_name = "distillation/importance_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        analysis = self.get_scoped(
            ImportanceAnalysis.objects.select_related("teacher", "dataset", "job"), pk=kwargs["analysis_id"]
        )
        summary = analysis.summary or {}
        layers = summary.get("layers") or {}
        context.update(
            analysis=analysis,
            job=analysis.job,
            influence=layer_bars(layers.get("influence") or []),
            skip_loss=layer_bars(layers.get("skip_loss") or []),
            chart={"w": (BAR_W + 2) * len(layers.get("influence") or []), "h": BAR_H},
            heads=heatmap((summary.get("heads") or {}).get("score") or []),
            kv_loss=heatmap((summary.get("kv_groups") or {}).get("loss") or []),
            neurons=box_rows((summary.get("neurons") or {}).get("per_layer") or []),
            recipes=self.scoped(Recipe).filter(analysis=analysis),
        )
        return context
