"""Pages of recipes: review one (what is kept, what is dropped and why, the estimates), edit, compare two,
make one by a strategy, approve."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from distillation.actions import builds as build_actions
from distillation.actions import recipes as recipe_actions
from distillation.models import ImportanceAnalysis, Recipe, Strategy
from projects.actions import ActionError
from projects.views.base import OrgPageView, OrgView

STRATEGY_CHOICES = [
    (Strategy.IMPORTANCE_RATIO, "Keep the most important parts: a ratio of the teacher's parameters", "ratio"),
    (Strategy.LAYER_COUNT, "Keep the N most important layers", "n_layers"),
    (Strategy.WEIGHT_RANGE, "Keep the layers whose weight statistic lies in a range", "low,high"),
    (Strategy.BASELINE_LOW_INFLUENCE, "Baseline: drop the N layers of lowest block influence", "n_layers"),
    (Strategy.BASELINE_LAST_LAYERS, "Baseline: drop the last N layers", "n_layers"),
]


def review(recipe: Recipe) -> dict:
    """What a person reads before approving: kept and dropped layers (with the reason), KV groups and MLP width
    per kept layer, calibration and quantization, and the estimates."""
    doc = recipe.document or {}
    teacher = doc.get("teacher") or {}
    kv = doc.get("kv_groups_kept") or {}
    neurons = doc.get("mlp_neurons_kept") or {}
    kept = []
    for position, layer in enumerate(doc.get("layers_kept") or []):
        groups = kv[position] if isinstance(kv, list) and position < len(kv) else kv.get(str(layer), kv.get(layer))
        width = neurons[position] if isinstance(neurons, list) and position < len(neurons) else neurons.get(
            str(layer), neurons.get(layer)
        )  # fmt: skip
        kept.append({"layer": layer, "kv_groups": groups, "width": len(width) if isinstance(width, list) else width})
    return {
        "teacher": teacher,
        "kept": kept,
        "dropped": doc.get("layers_dropped") or [],
        "calibration": doc.get("calibration") or {},
        "quant_types": doc.get("quant_types") or [],
        "wanda_sparsity": doc.get("wanda_sparsity") or 0,
        "objective": doc.get("objective") or "",
    }


class RecipeDetailView(OrgPageView):
    template_name = "distillation/recipe_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        build_actions.sync_deployed(self.org)
        recipe = self.get_scoped(Recipe.objects.select_related("teacher", "analysis", "approved_by"),
                                 pk=kwargs["recipe_id"])  # fmt: skip
        context.update(
            recipe=recipe,
            review=review(recipe),
            document=json.dumps(recipe.document, indent=2),
            others=self.scoped(Recipe).filter(teacher=recipe.teacher).exclude(pk=recipe.pk)[:20],
            builds=recipe.builds.select_related("student", "job"),
        )
        return context


class RecipeEditView(OrgView):
    def post(self, request: HttpRequest, recipe_id: int) -> HttpResponse:
        recipe = self.get_scoped(Recipe.objects.select_related("analysis"), pk=recipe_id)
        back = reverse("recipe-detail", kwargs={"org_slug": self.org.slug, "recipe_id": recipe.pk})
        try:
            recipe = recipe_actions.do_edit_recipe(recipe, request.user, request.POST.get("document", ""))
        except ActionError as error:
            return self.action_failed(error, back)
        messages.success(request, f"Saved as version {recipe.version}.")
        return redirect(back)


class RecipeApproveView(OrgView):
    def post(self, request: HttpRequest, recipe_id: int) -> HttpResponse:
        recipe = self.get_scoped(Recipe.objects.select_related("analysis"), pk=recipe_id)
        back = reverse("recipe-detail", kwargs={"org_slug": self.org.slug, "recipe_id": recipe.pk})
        try:
            recipe_actions.do_approve_recipe(recipe, request.user)
        except ActionError as error:
            return self.action_failed(error, back)
        messages.success(request, f"“{recipe.name}” is approved: build it when you are ready.")
        return redirect(back)


class RecipeCompareView(OrgPageView):
    """Two recipes side by side (``?a=<id>&b=<id>``)."""

    template_name = "distillation/recipe_compare.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        ids = [self.request.GET.get(k, "") for k in ("a", "b")]
        recipes = [self.get_scoped(Recipe.objects.select_related("teacher"), pk=int(i)) for i in ids if i.isdigit()]
        if len(recipes) != 2:
            context["error"] = "Choose two recipes to compare (open a recipe and pick another to compare it with)."
            return context
        a, b = (review(r) for r in recipes)
        layers = sorted({row["layer"] for row in a["kept"]} | {row["layer"] for row in b["kept"]}
                        | {d.get("index") for d in a["dropped"] + b["dropped"]} - {None})  # fmt: skip
        by_layer = [{"layer": layer, "a": next((r for r in a["kept"] if r["layer"] == layer), None),
                     "b": next((r for r in b["kept"] if r["layer"] == layer), None)} for layer in layers]  # fmt: skip
        context.update(a=recipes[0], b=recipes[1], rows=by_layer)
        return context


class RecipeCreateView(OrgPageView):
    """GET: the strategies for an analysis (``?analysis=<id>``); POST: make a recipe by one."""

    template_name = "distillation/recipe_create.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["analyses"] = self.scoped(ImportanceAnalysis).filter(status="complete").select_related("teacher")
        context["strategies"] = STRATEGY_CHOICES
        context["selected"] = self.request.GET.get("analysis", "")
        return context

    def post(self, request: HttpRequest) -> HttpResponse:
        data = request.POST
        back = reverse("recipe-create", kwargs={"org_slug": self.org.slug})
        try:
            analysis_id = data.get("analysis", "")
            analyses = self.scoped(ImportanceAnalysis)
            analysis = analyses.filter(pk=int(analysis_id)).first() if analysis_id.isdigit() else None
            if analysis is None or not analysis.is_complete:
                raise ActionError("Choose a complete importance analysis of this organisation.", field="analysis")
            options = {k: data[k] for k in ("ratio", "n_layers", "low", "high") if data.get(k)}
            recipe = recipe_actions.do_recipe_by_strategy(analysis, request.user, data.get("strategy", ""), **options)
        except ActionError as error:
            return self.action_failed(error, back)
        messages.success(request, f"“{recipe.name}” proposed: review it below.")
        return redirect("recipe-detail", org_slug=self.org.slug, recipe_id=recipe.pk)
