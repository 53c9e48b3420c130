"""A training run's page: live loss curves, then the held-out metrics of every coder side by side."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from analysis.actions import exports as export_actions
from analysis.models import Coder, CoderExport, CoderKind, CoderRun, ExportFormat, ExportStatus
from projects import blobs
from projects.actions import ActionError
from projects.views.base import OrgPageView, OrgView

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


def comparison(coders: list[Coder]) -> list[dict]:
    """Per layer: each kind's FVU and CE increase as bar heights (0–100, the layer's largest value is 100) and
    whether the skip transcoder is at least as good as every baseline on both (Pareto-dominates them)."""
    layers: dict[int, list[Coder]] = {}
    for coder in coders:
        if coder.fvu is not None and coder.ce_increase is not None:
            layers.setdefault(coder.layer, []).append(coder)
    rows = []
    for layer, group in sorted(layers.items()):
        fvu_max = max(c.fvu for c in group) or 1.0
        ce_max = max(max(c.ce_increase for c in group), 1e-9)
        bars = []
        for i, c in enumerate(group):
            fvu_h, ce_h = round(100 * max(c.fvu, 0) / fvu_max), round(100 * max(c.ce_increase, 0) / ce_max)
            bars.append({"kind": c.get_kind_display(), "colour": COLOURS.get(c.kind, "#555"), "fvu": c.fvu,
                         "ce": c.ce_increase, "x": 36 * i, "x_ce": 140 + 36 * i, "fvu_h": fvu_h, "ce_h": ce_h,
                         "fvu_y": 100 - fvu_h, "ce_y": 100 - ce_h})  # fmt: skip
        skip = next((c for c in group if c.kind == CoderKind.SKIP_TRANSCODER), None)
        others = [c for c in group if c.kind != CoderKind.SKIP_TRANSCODER]
        verdict = None
        if skip is not None and others:
            verdict = all(skip.fvu <= o.fvu and skip.ce_increase <= o.ce_increase for o in others)
        rows.append({"layer": layer, "bars": bars, "dominates": verdict})
    return rows


class CoderRunDetailView(OrgPageView):
    template_name = "analysis/coder_run_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        run = self.get_scoped(
            CoderRun.objects.select_related("capture__teacher", "capture__dataset", "job"), pk=kwargs["run_id"]
        )
        coders = list(run.coders.all())
        context.update(
            comparison=comparison(coders),
            run=run,
            job=run.job,
            coders=coders,
            paths=curve_paths(run.curves or {}),
            exports=list(run.exports.select_related("blob", "job")),
            export_formats=ExportFormat.choices,
            kinds=[(k, label) for k, label in CoderKind.choices if k in (run.kinds or [])],
            chart={"w": CHART_W, "h": CHART_H},
        )
        return context

    def get(self, request, *args, **kwargs):
        context = self.get_context_data(**kwargs)
        if request.GET.get("fragment") == "curves":
            return TemplateResponse(request, "analysis/_curves.html", context)
        return self.render_to_response(context)


class ExportCreateView(OrgView):
    """POST: export the run's coders of one kind (circuit-tracer or SAELens), as a job."""

    def post(self, request: HttpRequest, run_id: int) -> HttpResponse:
        run = self.get_scoped(CoderRun.objects.select_related("capture__teacher", "capture__project"), pk=run_id)
        back = reverse("coder-run-detail", kwargs={"org_slug": self.org.slug, "run_id": run.pk})
        try:
            export_actions.do_export_coders(
                run, request.user, format=request.POST.get("format", ""), kind=request.POST.get("kind", "")
            )
        except ActionError as error:
            return self.action_failed(error, back)
        messages.success(request, "Exporting: the download appears below when the zip is written.")
        return redirect(f"{back}#exports")


class ExportDownloadView(OrgView):
    """GET: the export's zip, once complete (never a half-written file)."""

    def get(self, request: HttpRequest, export_id: int) -> HttpResponse:
        export = self.get_scoped(CoderExport.objects.select_related("blob"), pk=export_id)
        if export.status != ExportStatus.COMPLETE or export.blob is None:
            back = reverse("coder-run-detail", kwargs={"org_slug": self.org.slug, "run_id": export.run_id})
            return self.action_failed(ActionError("This export is not complete yet.", code="conflict"), back)
        return FileResponse(open(blobs.local_path(export.blob), "rb"), as_attachment=True, filename=export.filename)
