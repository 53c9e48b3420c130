"""The feature browser of a coder, a feature's page, and the test box."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import redirect
from django.urls import reverse

from analysis.actions import features as feature_actions
from analysis.actions import labels as label_actions
from analysis.models import Coder, Feature
from projects.actions import ActionError
from projects.models import Job
from projects.views.base import OrgPageView, OrgView
from runtime.models import Agent, AgentStatus, Backend

SORTS = {"frequency": "-frequency", "max": "-max_activation", "mean": "-mean_activation", "index": "index"}


class FeatureListView(OrgPageView):
    """Every feature of one coder: sortable, filterable by frequency and label text."""

    template_name = "analysis/feature_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        coder = self.get_scoped(Coder.objects.select_related("run__capture__teacher"), pk=kwargs["coder_id"])
        features = self.scoped(Feature).filter(coder=coder)
        query = self.request.GET
        sort = query.get("sort") if query.get("sort") in SORTS else "frequency"
        if query.get("q"):
            features = features.filter(label__icontains=query["q"])
        if query.get("alive", "1") == "1":
            features = features.filter(frequency__gt=0)
        try:
            min_frequency = float(query.get("min_frequency") or 0)
        except ValueError:
            min_frequency = 0.0
        if min_frequency:
            features = features.filter(frequency__gte=min_frequency)
        page = Paginator(features.order_by(SORTS[sort], "index"), 100).get_page(query.get("page"))
        described = self.scoped(Feature).filter(coder=coder).exists()
        jobs = self.scoped(Job).filter(
            kind__in=[feature_actions.DESCRIBE_JOB, label_actions.LABEL_JOB], params__coder=coder.pk
        )
        agents = self.scoped(Agent).filter(Q(status=AgentStatus.LIVE) | Q(backend=Backend.REMOTE))
        context.update(coder=coder, page=page, sort=sort, query=query, described=described, job=jobs.first(),
                       agents=list(agents))  # fmt: skip
        return context


class DescribeFeaturesView(OrgView):
    def post(self, request, coder_id: int):
        coder = self.get_scoped(Coder.objects.select_related("run__capture"), pk=coder_id)
        back = reverse("feature-list", kwargs={"org_slug": self.org.slug, "coder_id": coder.pk})
        try:
            feature_actions.do_describe_features(coder, request.user)
        except ActionError as error:
            return self.action_failed(error, back)
        messages.success(request, "Describing the features: their pages fill in when the job is done.")
        return redirect(back)


class LabelFeaturesView(OrgView):
    def post(self, request, coder_id: int):
        coder = self.get_scoped(Coder.objects.select_related("run__capture"), pk=coder_id)
        back = reverse("feature-list", kwargs={"org_slug": self.org.slug, "coder_id": coder.pk})
        agent_id, limit = request.POST.get("agent", ""), request.POST.get("limit", "20")
        agent = self.scoped(Agent).filter(pk=int(agent_id)).first() if agent_id.isdigit() else None
        try:
            if agent is None:
                raise ActionError("Choose one of the organisation's agents.", field="agent")
            label_actions.do_label_features(coder, request.user, agent, limit=int(limit) if limit.isdigit() else 0)
        except ActionError as error:
            return self.action_failed(error, back)
        messages.success(request, f"{agent.name} is labelling the features; labels and scores appear as it goes.")
        return redirect(back)


class FeatureDetailView(OrgPageView):
    template_name = "analysis/feature_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        coder = self.get_scoped(Coder.objects.select_related("run__capture__teacher"), pk=kwargs["coder_id"])
        feature = self.get_scoped(Feature.objects.filter(coder=coder), index=kwargs["index"])
        counts = (feature.histogram or {}).get("counts") or []
        edges = (feature.histogram or {}).get("edges") or []
        peak = max(counts) if counts else 0
        bars = [
            {"low": edges[i], "high": edges[i + 1], "count": c, "height": round(100 * c / peak) if peak else 0}
            for i, c in enumerate(counts)
        ]
        contexts = []
        for item in feature.contexts:
            top = max(item["activations"]) or 1.0
            contexts.append(
                {
                    "value": item["value"],
                    "pieces": [
                        {"text": t, "activation": a, "alpha": round(max(a, 0) / top, 2), "center": i == item["center"]}
                        for i, (t, a) in enumerate(zip(item["tokens"], item["activations"], strict=True))
                    ],
                }
            )
        context.update(
            coder=coder,
            feature=feature,
            bars=bars if any(b["count"] for b in bars) else [],
            contexts=contexts,
            links=feature.neuron_links.all()[:10],
        )
        return context


class TestBoxView(OrgPageView):
    """GET: the box (and the result of a test job, ``?job=``); POST: start a test job."""

    template_name = "analysis/test_box.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        coder = self.get_scoped(Coder.objects.select_related("run__capture__teacher"), pk=kwargs["coder_id"])
        context["coder"] = coder
        job_id = self.request.GET.get("job")
        if job_id and job_id.isdigit():
            job = self.get_scoped(Job.objects.filter(kind=feature_actions.TEST_BOX_JOB), pk=int(job_id))
            if job.params.get("coder") == coder.pk:
                context["job"] = job
                context["text"] = job.params.get("text", "")
        return context

    def get(self, request, *args, **kwargs):
        context = self.get_context_data(**kwargs)
        if request.GET.get("fragment") == "result":
            return self.response_class(request=request, template="analysis/_test_box_result.html", context=context)
        return self.render_to_response(context)

    def post(self, request, coder_id: int):
        coder = self.get_scoped(Coder.objects.select_related("run__capture"), pk=coder_id)
        back = reverse("feature-test", kwargs={"org_slug": self.org.slug, "coder_id": coder.pk})
        try:
            job = feature_actions.do_test_text(coder, request.user, request.POST.get("text", ""))
        except ActionError as error:
            return self.action_failed(error, back)
        return redirect(f"{back}?job={job.pk}")
