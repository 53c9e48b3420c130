"""The organisation's dashboard."""

from __future__ import annotations

import time

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from projects import dashboard, tenant_cache
from projects.background import reap_stale_jobs
from projects.models import Dataset, Job, JobStatus, LanguageModel, Membership, Organization, Project
from projects.views.base import OrgPageView


class DashboardView(OrgPageView):
    """The organisation at a glance. Its content is cached per organisation, role and minute
    (relative times), and thrown away when any of the rows it shows changes (tenant_cache.py)."""

    template_name = "projects/dashboard.html"

    def get_context_data(self, **kwargs):
        from runtime.models import Agent  # the runtime app builds on this one

        reap_stale_jobs()
        context = super().get_context_data(**kwargs)
        role = self.membership.role
        context["content"] = mark_safe(
            tenant_cache.cached(  # our own template's output, escaped there
                self.org.pk,
                f"dashboard:{role}:{int(time.time() // 60)}",
                depends_on=(Organization, Membership, Project, Job, Agent, LanguageModel, Dataset)
                + tuple(card.model for card in dashboard.cards()),
                build=lambda: render_to_string("projects/_dashboard_content.html", self.content_context(Agent)),
            )
        )
        return context

    def content_context(self, agent_model: type) -> dict:
        active = self.scoped(Project).active()
        return {
            "org": self.org,
            "membership": self.membership,
            "projects": list(active[:10]),
            "project_count": active.count(),
            "jobs": list(self.scoped(Job).select_related("project")[:10]),
            "running_count": self.scoped(Job).filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).count(),
            "member_count": self.scoped(Membership).count(),
            "agents": list(self.scoped(agent_model).select_related("model")[:10]),
            "model_count": self.scoped(LanguageModel).count(),
            "dataset_count": self.scoped(Dataset).count(),
            "app_cards": [
                {"count": self.scoped(card.model).count(), "noun": card.noun, "url_name": card.url_name}
                for card in dashboard.cards()
            ],
        }
