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
from projects.models import Job
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


class BaselinesView(OrgView):
    def post(self, request: HttpRequest, build_id: int) -> HttpResponse:
        build = self.get_scoped(Build.objects.select_related("recipe__project"), pk=build_id)
        back = reverse("build-detail", kwargs={"org_slug": self.org.slug, "build_id": build.pk})
        try:
            build_actions.do_evaluate_baselines(build, request.user)
        except ActionError as error:
            return self.action_failed(error, back)
        messages.success(request, "Building the baselines at the same size and budget: they join the report.")
        return redirect(back)


def ppl_bars(report: dict) -> list[dict]:
    """Bars of domain and control perplexity for the teacher, the student and the baselines (torch rows)."""
    rows = [r for r in report.get("rows", []) if r["key"] in ("teacher-torch", "student-torch")]
    rows += report.get("baselines", [])
    top = max([max(r.get("domain_ppl") or 0, r.get("control_ppl") or 0) for r in rows] or [1]) or 1
    bars = []
    for i, r in enumerate(rows):
        for j, key in enumerate(("domain_ppl", "control_ppl")):
            value = r.get(key)
            if value is None:
                continue
            h = round(160 * min(value, top) / top, 1)
            bars.append({"x": 70 * i + 26 * j, "y": round(170 - h, 1), "h": h, "value": value, "name": r["name"],
                         "key": key, "colour": "#1f77b4" if key == "domain_ppl" else "#ff7f0e"})  # fmt: skip
    return bars


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
            bars=ppl_bars(build.report or {}),
            bars_w=70 * (2 + len((build.report or {}).get("baselines", []))),
            baselines_job=self.scoped(Job).filter(kind="distillation.baselines", params__build=build.pk).first(),
        )
        return context

    def get(self, request, *args, **kwargs):
        context = self.get_context_data(**kwargs)
        if request.GET.get("fragment") == "curve":
            return TemplateResponse(request, "distillation/_build_curve.html", context)
        return self.render_to_response(context)
