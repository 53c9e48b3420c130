"""Project pages: list, detail, archive and edit."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from projects import actions
from projects.actions import ActionError
from projects.forms.projects import ProjectForm
from projects.models import Job, Project
from projects.views.base import OrgPageView, OrgView


class ProjectListView(OrgPageView):
    template_name = "projects/project_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        show_archived = self.request.GET.get("archived") == "1"
        projects = self.scoped(Project)
        context["projects"] = projects.exclude(archived_at=None) if show_archived else projects.active()
        context["show_archived"] = show_archived
        context.setdefault("form", ProjectForm())
        return context

    def post(self, request, *args, **kwargs):
        form = ProjectForm(request.POST)
        if form.is_valid():
            try:
                project = actions.do_create_project(self.org, request.user, **form.cleaned_data)
            except ActionError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, f"Project {project} created.")
                return redirect("project-detail", org_slug=self.org.slug, project_slug=project.slug)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class ProjectDetailView(OrgPageView):
    template_name = "projects/project_detail.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        project = self.get_scoped(Project, slug=kwargs["project_slug"])
        context["project"] = project
        context["jobs"] = self.scoped(Job).filter(project=project)[:20]
        return context


class ProjectActionView(OrgView):
    """POST-only: archive, unarchive, recount statistics."""

    def post(self, request, project_slug: str, action: str):
        project = self.get_scoped(Project, slug=project_slug)
        here = reverse("project-detail", kwargs={"org_slug": self.org.slug, "project_slug": project.slug})
        try:
            if action == "archive":
                actions.do_archive_project(project, True)
                messages.success(request, f"Project {project} archived.")
            elif action == "unarchive":
                actions.do_archive_project(project, False)
                messages.success(request, f"Project {project} is active again.")
            elif action == "recount":
                job = actions.do_enqueue_job(self.org, "projects.recount_stats", user=request.user, project=project)
                return redirect("job-detail", org_slug=self.org.slug, job_id=job.pk)
            else:
                raise Http404
        except ActionError as error:
            return self.action_failed(error, here)
        return redirect(here)
