"""A training run's page: live loss curves, then the held-out metrics of every coder side by side."""

from __future__ import annotations

from django.template.response import TemplateResponse

from analysis.models import CoderRun
from projects.views.base import OrgPageView

CHART_W, CHART_H = 640, 220
COLOURS = {"skip_transcoder": "#1f77b4", "transcoder": "#ff7f0e", "sae": "#2ca02c"}


def curve_paths(curves: dict[str, list[list[float]]]) -> list[dict]:
    """SVG polylines of the FVU curves (x: tokens, y: FVU from 0 to the largest value seen, at most 1.5)."""
    points = [p for series in curves.values() for p in series]
    if not points:
        return []
    x_max = max(p[0] for p in points) or 1
    y_max = min(max(p[1] for p in points), 1.5) or 1
    paths = []
    for key, series in sorted(curves.items(), key=lambda kv: (int(kv[0].split(":")[0]), kv[0])):
        layer, kind = key.split(":", 1)
        coords = " ".join(
            f"{CHART_W * x / x_max:.1f},{CHART_H - CHART_H * min(y, y_max) / y_max:.1f}" for x, y in series
        )
        paths.append({"layer": layer, "kind": kind, "points": coords, "colour": COLOURS.get(kind, "#555"),
                      "last": series[-1][1]})  # fmt: skip
    return paths


class CoderRunDetailView(OrgPageView):
    template_name = "analysis/coder_run_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        run = self.get_scoped(
            CoderRun.objects.select_related("capture__teacher", "capture__dataset", "job"), pk=kwargs["run_id"]
        )
        context.update(
            run=run,
            job=run.job,
            coders=list(run.coders.all()),
            paths=curve_paths(run.curves or {}),
            chart={"w": CHART_W, "h": CHART_H},
        )
        return context

    def get(self, request, *args, **kwargs):
        context = self.get_context_data(**kwargs)
        if request.GET.get("fragment") == "curves":
            return TemplateResponse(request, "analysis/_curves.html", context)
        return self.render_to_response(context)
