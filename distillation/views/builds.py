"""Pages of builds: start one, watch it (phase, live loss curve, tokens/s), read its report."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from distillation.actions import builds as build_actions
from distillation.models import Build, Recipe
from projects.actions import ActionError
from projects.views.base import OrgPageView, OrgView

CHART_W, CHART_H = 640, 200


def loss_path(points: list[list[float]]) -> str:
    """An SVG polyline of ``[[step, loss], ...]`` (x: steps, y: 0 … the largest loss)."""
    if not points:
        return ""
    x_max = max(p[0] for p in points) or 1
    y_max = max(p[1] for p in points) or 1
    return " ".join(f"{CHART_W * x / x_max:.1f},{CHART_H - CHART_H * max(y, 0) / y_max:.1f}" for x, y in points)


class BuildCreateView(OrgView):
    def post(self, request: HttpRequest, recipe_id: int) -> HttpResponse:
        recipe = self.get_scoped(Recipe, pk=recipe_id)
        try:
            build = build_actions.do_build(recipe, request.user)
        except ActionError as error:
            return self.action_failed(
                error, reverse("recipe-detail", kwargs={"org_slug": self.org.slug, "recipe_id": recipe.pk})
            )
        messages.success(request, f"Build #{build.pk} started: its loss curve shows below.")
        return redirect("build-detail", org_slug=self.org.slug, build_id=build.pk)


class BuildDetailView(OrgPageView):
    template_name = "distillation/build_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        build = self.get_scoped(Build.objects.select_related("recipe__teacher", "student", "job"),
                                pk=kwargs["build_id"])  # fmt: skip
        curves = build.curves or {}
        context.update(
            build=build,
            job=build.job,
            loss=loss_path(curves.get("loss") or []),
            last_loss=(curves.get("loss") or [[0, None]])[-1][1],
            chart={"w": CHART_W, "h": CHART_H},
            report=build.report or {},
        )
        return context

    def get(self, request, *args, **kwargs):
        context = self.get_context_data(**kwargs)
        if request.GET.get("fragment") == "curve":
            return TemplateResponse(request, "distillation/_build_curve.html", context)
        return self.render_to_response(context)
