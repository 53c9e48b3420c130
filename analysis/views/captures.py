"""Pages of captures: the analysis home (captures and runs), starting a capture, a capture's page."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse

from analysis.actions import captures as capture_actions
from analysis.actions import coders as coder_actions
from analysis.actions.captures import format_bytes
from analysis.models import Capture, CoderKind, CoderOptimizer, CoderRun, CoderSource
from projects.actions import ActionError
from projects.models import Dataset, DatasetRole, DatasetStatus, LanguageModel, ModelStatus
from projects.views.base import OrgPageView, OrgView, decimal_number, whole_number


class AnalysisHomeView(OrgPageView):
    """Captures and training runs of the organisation."""

    template_name = "analysis/home.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["captures"] = self.scoped(Capture).select_related("teacher", "dataset", "project", "job")[:50]
        context["runs"] = self.scoped(CoderRun).select_related("capture__teacher", "job")[:50]
        return context


class CaptureCreateView(OrgPageView):
    """GET: the form, with the estimate for the chosen teacher; POST: start the capture."""

    template_name = "analysis/capture_create.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        teachers = self.scoped(LanguageModel).filter(status=ModelStatus.READY).select_related("project")
        context["teachers"] = [t for t in teachers if t.can("analysis")]
        ready = self.scoped(Dataset).filter(status=DatasetStatus.READY).select_related("project")
        context["datasets"] = sorted(ready, key=lambda d: (d.role != DatasetRole.DOMAIN, d.name))  # domain first
        context["defaults"] = {"hookpoints": capture_actions.DEFAULT_HOOKPOINTS, "token_budget": 65_536,
                               "seq_len": 256, "batch_size": 8}  # fmt: skip
        context["values"] = {**context["defaults"], **self.request.GET.dict()}
        teacher_id = self.request.GET.get("teacher")
        if teacher_id and teacher_id.isdigit():
            teacher = self.scoped(LanguageModel).filter(pk=int(teacher_id)).first()
            if teacher is not None:
                try:
                    patterns = capture_actions.parse_patterns(context["values"]["hookpoints"])
                    budget = whole_number(context["values"].get("token_budget"), 65_536)
                    planned = capture_actions.plan(teacher, patterns, budget)
                    planned["estimated"] = capture_actions.format_bytes(planned["estimated_bytes"])
                    planned["free"] = capture_actions.format_bytes(planned["free_bytes"])
                    planned["fits"] = (
                        planned["estimated_bytes"] + capture_actions.DISK_RESERVE_BYTES < planned["free_bytes"]
                    )
                    context["plan"] = planned
                except ActionError as error:
                    context["plan_error"] = error.message
        return context

    def post(self, request):
        data = request.POST
        try:
            teacher = self.scoped(LanguageModel).filter(pk=whole_number(data.get("teacher"), 0)).first()
            dataset = self.scoped(Dataset).filter(pk=whole_number(data.get("dataset"), 0)).first()
            if teacher is None or dataset is None:
                raise ActionError("Choose a teacher and a dataset of this organisation.")
            capture = capture_actions.do_start_capture(
                teacher,
                dataset,
                request.user,
                hookpoints=data.get("hookpoints") or capture_actions.DEFAULT_HOOKPOINTS,
                token_budget=whole_number(data.get("token_budget"), 65_536),
                seq_len=whole_number(data.get("seq_len"), 256),
                batch_size=whole_number(data.get("batch_size"), 8),
                split=data.get("split") or "train",
                dtype=data.get("dtype") or "float16",
            )
        except ActionError as error:
            query = urlencode({k: v for k, v in data.items() if k != "csrfmiddlewaretoken"})
            back = reverse("capture-create", kwargs={"org_slug": self.org.slug})
            return self.action_failed(error, f"{back}?{query}")
        messages.success(request, f"Capture #{capture.pk} started: its progress shows below.")
        return redirect("capture-detail", org_slug=self.org.slug, capture_id=capture.pk)


class CaptureDetailView(OrgPageView):
    """A capture: settings, live progress, shards; start a training run from it."""

    template_name = "analysis/capture_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        capture = self.get_scoped(
            Capture.objects.select_related("teacher", "torch_model", "dataset", "project", "job"),
            pk=kwargs["capture_id"],
        )
        context["capture"] = capture
        context["job"] = capture.job
        context["estimated"] = capture_actions.format_bytes(capture.estimated_bytes)
        context["stored"] = capture_actions.format_bytes(capture.bytes)
        context["runs"] = self.scoped(CoderRun).filter(capture=capture)
        context["kinds"] = CoderKind.choices
        context["optimizers"] = CoderOptimizer.choices
        context["sources"] = CoderSource.choices
        return context


class CaptureReleaseView(OrgView):
    """POST: free the disk of a capture's shards (its coders and features stay)."""

    def post(self, request, capture_id: int):
        capture = self.get_scoped(Capture, pk=capture_id)
        back = reverse("capture-detail", kwargs={"org_slug": self.org.slug, "capture_id": capture.pk})
        try:
            freed = capture_actions.do_release_shards(capture, request.user)
        except ActionError as error:
            return self.action_failed(error, back)
        messages.success(request, f"The shards of capture #{capture.pk} were released: {format_bytes(freed)} freed.")
        return redirect(back)


class CoderRunCreateView(OrgView):
    """POST: train coders on a complete capture."""

    def post(self, request, capture_id: int):
        capture = self.get_scoped(Capture, pk=capture_id)
        data = request.POST
        try:
            layers_text = (data.get("layers") or "").replace(",", " ").split()
            run = coder_actions.do_start_coder_run(
                capture,
                request.user,
                layers=[whole_number(x, 0) for x in layers_text] or None,
                kinds=data.getlist("kinds") or None,
                expansion=whole_number(data.get("expansion"), 8),
                k=whole_number(data.get("k"), 32),
                optimizer=data.get("optimizer") or CoderOptimizer.SIGNUM,
                lr=decimal_number(data.get("lr"), None),
                batch_size=whole_number(data.get("batch_size"), 1024),
                token_budget=whole_number(data.get("token_budget"), None),
                held_out_tokens=whole_number(data.get("held_out_tokens"), None),
                source=data.get("source") or CoderSource.SHARDS,
            )
        except ActionError as error:
            return self.action_failed(
                error, reverse("capture-detail", kwargs={"org_slug": self.org.slug, "capture_id": capture.pk})
            )
        messages.success(request, f"Training run #{run.pk} started.")
        return redirect("coder-run-detail", org_slug=self.org.slug, run_id=run.pk)
