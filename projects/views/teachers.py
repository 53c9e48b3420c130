"""htmx pages of models: list and upload, model detail (layers, parameters), comparison."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.contrib import messages
from django.db.models import Sum
from django.shortcuts import redirect
from django.urls import reverse

from projects.actions import ActionError
from projects.actions import conversion as conversion_actions
from projects.actions import teachers as teacher_actions
from projects.models import LanguageModel, Project
from projects.views.base import OrgPageView, OrgView

#: Components grouped as the layer table and the chart show them.
COMPONENT_GROUPS = {
    "attention": ("attn_q", "attn_k", "attn_v", "attn_o"),
    "mlp": ("mlp_gate", "mlp_up", "mlp_down"),
    "norm": ("norm",),
    "embedding": ("embedding",),
    "output head": ("output_head",),
    "other": ("other",),
}


class ModelListView(OrgPageView):
    template_name = "projects/models/list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["models"] = self.scoped(LanguageModel).select_related("project")
        context["projects"] = self.scoped(Project).active()
        context["chunk_bytes"] = settings.UPLOAD_CHUNK_BYTES
        return context


class ModelDetailView(OrgPageView):
    template_name = "projects/models/detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        model = self.get_scoped(LanguageModel.objects.select_related("project", "derived_from"), pk=kwargs["model_id"])
        rows = (
            model.tensors.values("layer", "component").annotate(params=Sum("n_params"), size=Sum("n_bytes")).order_by()
        )
        by_layer: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        totals: dict[str, int] = defaultdict(int)
        for row in rows:
            group = next(g for g, members in COMPONENT_GROUPS.items() if row["component"] in members)
            totals[group] += row["params"]
            if row["layer"] is not None:
                by_layer[row["layer"]][group] += row["params"]
                by_layer[row["layer"]]["total"] += row["params"]
                by_layer[row["layer"]]["bytes"] += row["size"]
        total = sum(totals.values()) or 1
        context.update(
            model=model,
            layers=[{"index": i, **by_layer[i]} for i in sorted(by_layer)],
            breakdown=[
                {"group": g, "label": "MLP" if g == "mlp" else g.capitalize(), "params": p, "percent": 100 * p / total}
                for g, p in totals.items()
                if p
            ],
            others=self.scoped(LanguageModel).filter(status="ready").exclude(pk=model.pk),
            files=model.files.select_related("blob"),
            dependents=list(model.derivatives.all()),
            derivatives=self.scoped(LanguageModel).filter(derived_from=model).order_by("created_at"),
            conversion=conversion_offer(model),
        )
        return context


def conversion_offer(model: LanguageModel) -> dict | None:
    """The conversion the model page offers: its button's label and target, or None.

    A copy is not offered its source's format back: that is its source.
    """
    if model.derived_from_id and model.derived_from.format != model.format:
        return None
    if model.format == "gguf":
        return {
            "target": "safetensors",
            "label": "Make a torch copy (Hugging Face)",
            "help": "Dequantizes the GGUF into a float32 safetensors checkpoint for analysis; done once, then reused.",
        }
    if model.format == "safetensors":
        return {
            "target": "gguf",
            "label": "Convert to GGUF",
            "help": "Writes an F16 GGUF with llama.cpp's converter, for chat; done once, then reused.",
        }
    return None


class ModelConvertView(OrgView):
    """POST: ask for the model in the other format; go to the copy, or to the job making it."""

    def post(self, request, model_id: int):
        model = self.get_scoped(LanguageModel, pk=model_id)
        try:
            requested = conversion_actions.do_request_conversion(
                model, request.user, request.POST.get("format", ""), outtype=request.POST.get("outtype") or None
            )
        except ActionError as error:
            return self.action_failed(
                error, reverse("model-detail", kwargs={"org_slug": self.org.slug, "model_id": model_id})
            )
        if requested.derivative is not None:
            messages.info(request, f"{requested.derivative} is already a converted copy of {model}.")
            return redirect("model-detail", org_slug=self.org.slug, model_id=requested.derivative.pk)
        messages.success(request, f"Converting {model}: follow the job; the copy appears under “Converted copies”.")
        return redirect("job-detail", org_slug=self.org.slug, job_id=requested.job.pk)


class ModelDeleteView(OrgView):
    def post(self, request, model_id: int):
        model = self.get_scoped(LanguageModel, pk=model_id)
        try:
            teacher_actions.do_delete_model(model)
        except ActionError as error:
            return self.action_failed(
                error, reverse("model-detail", kwargs={"org_slug": self.org.slug, "model_id": model_id})
            )
        messages.success(request, f"Model {model} deleted.")
        return redirect("model-list", org_slug=self.org.slug)


class ModelCompareView(OrgPageView):
    template_name = "projects/models/compare.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        a = self.get_scoped(LanguageModel, pk=kwargs["model_id"])
        other = self.request.GET.get("with", "")
        b = self.get_scoped(LanguageModel, pk=other) if other.isdigit() else None
        result = None
        if b is None:
            context["error"] = "Choose the model to compare with on the model's page."
        else:
            try:
                result = teacher_actions.comparison_of(a, b)
            except ActionError as error:
                context["error"] = error.message
        context.update(a=a, b=b, result=result)
        return context
