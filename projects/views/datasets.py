"""htmx pages of datasets: list, upload form, detail (preview, statistics, split, tokens)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse

from projects.actions import ActionError
from projects.actions import datasets as dataset_actions
from projects.background import reap_stale_jobs
from projects.forms.datasets import DatasetUploadForm, SplitForm
from projects.models import Dataset, DatasetRole, DatasetStatus, Job, JobStatus, Project
from projects.views.base import OrgPageView, OrgView


def _compact(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.3g}k"
    return f"{n / 1_000_000:.3g}M"


def histogram_chart(histogram: dict | None, unit: str) -> dict | None:
    """Bars of a LengthHistogram (see projects.engine.datasets) laid out for an inline SVG."""
    if not histogram or not histogram.get("buckets"):
        return None
    buckets = histogram["buckets"]
    height, gap = 160, 4
    bar_width = min(56.0, (640 - gap * (len(buckets) - 1)) / len(buckets))  # a few buckets stay bars, not slabs
    width = round(len(buckets) * bar_width + gap * (len(buckets) - 1), 1)
    tallest = max(b["count"] for b in buckets) or 1
    label_every = 1 if len(buckets) <= 12 else 2
    bars = []
    for i, bucket in enumerate(buckets):
        h = round(height * bucket["count"] / tallest, 1)
        lo, hi = bucket["lo"], bucket["hi"]
        span = _compact(lo) if lo == hi else f"{_compact(lo)}–{_compact(hi)}"
        bars.append(
            {
                "x": round(i * (bar_width + gap), 1),
                "y": round(height - h, 1),
                "width": round(bar_width, 1),
                "height": h,
                "count": bucket["count"],
                "span": span,
                "label": span if i % label_every == 0 else "",
                "label_x": round(i * (bar_width + gap) + bar_width / 2, 1),
            }
        )
    return {
        "width": width,
        "height": height,
        "total_height": height + 22,
        "bars": bars,
        "unit": unit,
        "summary": histogram,
    }


class DatasetListView(OrgPageView):
    template_name = "projects/datasets/list.html"

    def get_context_data(self, **kwargs):
        reap_stale_jobs()
        context = super().get_context_data(**kwargs)
        datasets = self.scoped(Dataset).select_related("project", "job")
        project = self.request.GET.get("project")
        if project:
            datasets = datasets.filter(project__slug=project)
        role = self.request.GET.get("role")
        if role in DatasetRole.values:
            datasets = datasets.filter(role=role)
        datasets = list(datasets[:500])
        # Uploads refused while they were processed leave only their failed job: show why.
        refused = (
            self.scoped(Job)
            .filter(kind=dataset_actions.PROCESS_JOB, status=JobStatus.FAILED)
            .select_related("project")[:20]
        )
        existing = set(
            self.scoped(Dataset).filter(pk__in=[j.params.get("dataset") for j in refused]).values_list("pk", flat=True)
        )
        context.update(
            datasets=datasets,
            roles=DatasetRole.choices,
            role_filter=role,
            project_filter=project,
            projects=self.scoped(Project).active(),
            refused=[j for j in refused if j.params.get("dataset") not in existing][:10],
        )
        return context


class DatasetCreateView(OrgPageView):
    """Upload a whole file with a plain form (the chunked browser uploader uses the API)."""

    template_name = "projects/datasets/create.html"

    def form(self, data=None, files=None) -> DatasetUploadForm:
        projects = self.scoped(Project).active()
        initial = {"project": self.request.GET.get("project")} if self.request.GET.get("project") else None
        return DatasetUploadForm(data, files, projects=projects, initial=initial)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", self.form())
        return context

    def post(self, request, *args, **kwargs):
        form = self.form(request.POST, request.FILES)
        if form.is_valid():
            project = self.get_scoped(Project, slug=form.cleaned_data["project"])
            upload = form.cleaned_data["file"]
            try:
                dataset = dataset_actions.do_create_dataset_from_file(
                    project,
                    request.user,
                    filename=upload.name,
                    stream=upload,
                    name=form.cleaned_data["name"],
                    role=form.cleaned_data["role"],
                    format=form.cleaned_data["format"],
                    options=form.options(),
                    split_ratio=form.cleaned_data["split_ratio"],
                    split_seed=form.cleaned_data["split_seed"],
                )
            except ActionError as error:
                field = {"upload": "file", "options": None, "split": None}.get(error.field, error.field)
                form.add_error(field if field in form.fields else None, error.message)
            else:
                messages.success(
                    request,
                    f"Dataset {dataset} created ({dataset.encoding or 'text'} detected); its documents are being read.",
                )
                return redirect("dataset-detail", org_slug=self.org.slug, dataset_id=dataset.pk)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class DatasetDetailView(OrgPageView):
    template_name = "projects/datasets/detail.html"

    def get_template_names(self):
        # While processing, the body refreshes itself (hx-get ?fragment=body) until it is ready.
        if self.request.GET.get("fragment") == "body":
            return ["projects/datasets/_body.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        reap_stale_jobs()
        context = super().get_context_data(**kwargs)
        dataset = get_object_or_404(
            self.scoped(Dataset).select_related("project", "job", "created_by"), pk=kwargs["dataset_id"]
        )
        stats = dataset.stats or {}
        context.update(
            dataset=dataset,
            job=dataset.job,
            characters_chart=histogram_chart(stats.get("characters"), "characters"),
            tokens_chart=histogram_chart(stats.get("tokens"), "tokens"),
            split_form=SplitForm(initial={"ratio": dataset.split_ratio, "seed": dataset.split_seed}),
            tokenizer_sources=dataset_actions.tokenizer_sources(dataset.project),
            can_write=self.membership.has_role("member"),
            processing=dataset.status == DatasetStatus.PROCESSING,
        )
        return context


class DatasetActionView(OrgView):
    """POST-only: split, count-tokens, delete."""

    def post(self, request, dataset_id: int, action: str):
        dataset = self.get_scoped(Dataset, pk=dataset_id)
        here = reverse("dataset-detail", kwargs={"org_slug": self.org.slug, "dataset_id": dataset.pk})
        try:
            if action == "split":
                form = SplitForm(request.POST)
                if not form.is_valid():
                    raise ActionError("Give a train fraction between 0.01 and 0.99 and a whole-number seed.")
                dataset = dataset_actions.do_set_split(dataset, form.cleaned_data["ratio"], form.cleaned_data["seed"])
                messages.success(
                    request, f"Split set: {dataset.train_count:,} train, {dataset.eval_count:,} eval documents."
                )
            elif action == "count-tokens":
                source = request.POST.get("source", "")
                kind, _, value = source.partition(":")
                dataset_actions.do_count_tokens(
                    dataset,
                    request.user,
                    model=value if kind == "model" else None,
                    tokenizer_upload=value if kind == "upload" else None,
                )
                messages.success(request, "Counting tokens; the figures appear here when the job is done.")
            elif action == "delete":
                dataset_actions.do_delete_dataset(dataset)
                messages.success(request, f"Dataset {dataset} deleted.")
                return redirect("dataset-list", org_slug=self.org.slug)
            else:
                raise Http404
        except ActionError as error:
            return self.action_failed(error, here)
        return redirect(here)
