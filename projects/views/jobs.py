"""Job pages: the list, one job's progress and log, cancel and retry."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from projects import actions
from projects.actions import ActionError
from projects.background import reap_stale_jobs
from projects.models import Job, JobStatus
from projects.views.base import OrgPageView, OrgView


class JobListView(OrgPageView):
    template_name = "projects/job_list.html"

    def get_context_data(self, **kwargs):
        reap_stale_jobs()
        context = super().get_context_data(**kwargs)
        jobs = self.scoped(Job).select_related("project")
        status = self.request.GET.get("status")
        if status in JobStatus.values:
            jobs = jobs.filter(status=status)
        context.update(jobs=jobs[:100], status_filter=status, statuses=JobStatus.choices)
        return context


class JobDetailView(OrgPageView):
    template_name = "projects/job_detail.html"

    def get_context_data(self, **kwargs):
        reap_stale_jobs()
        context = super().get_context_data(**kwargs)
        context["job"] = self.get_scoped(Job, pk=kwargs["job_id"])
        return context

    #: Fragments live.js fetches: the panel (polling fallback) and a list row (new jobs).
    FRAGMENTS = {"panel": "projects/_job_panel.html", "row": "projects/_job_row.html"}

    def get_template_names(self):
        return [self.FRAGMENTS.get(self.request.GET.get("fragment"), self.template_name)]


class JobActionView(OrgView):
    def post(self, request, job_id: int, action: str):
        job = self.get_scoped(Job, pk=job_id)
        here = reverse("job-detail", kwargs={"org_slug": self.org.slug, "job_id": job.pk})
        try:
            if action == "cancel":
                actions.do_cancel_job(job)
                messages.success(request, "Job cancelled.")
            elif action == "retry":
                job = actions.do_retry_job(job, request.user)
                messages.success(request, "Job queued again.")
                here = reverse("job-detail", kwargs={"org_slug": self.org.slug, "job_id": job.pk})
            else:
                raise Http404
        except ActionError as error:
            return self.action_failed(error, here)
        return redirect(here)
