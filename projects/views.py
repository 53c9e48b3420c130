"""htmx pages of the projects app: accounts, organisations, projects, members, tokens, jobs."""

from __future__ import annotations

import time

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from projects import actions, tenant_cache
from projects.actions import ActionError
from projects.forms import (
    DeleteOrganizationForm,
    InvitationForm,
    OrganizationForm,
    ProjectForm,
    RoleForm,
    TokenForm,
)
from projects.jobs_base import reap_stale_jobs
from projects.models import ApiToken, Invitation, Job, JobStatus, LanguageModel, Membership, Organization, Project, Role
from projects.views_base import OrgPageView, OrgView

# --- Accounts and organisations (outside any organisation) --------------------------------


@login_required
def home(request):
    """Send people to their (first) organisation, or to create one."""
    org = Organization.objects.for_user(request.user).order_by("name").first()
    if org is None:
        return redirect("org-create")
    return redirect("dashboard", org_slug=org.slug)


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = UserCreationForm(request.POST or None)
    # Where to go afterwards, e.g. back to the invitation link that sent them here.
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome! Create an organisation to start, or open an invitation link.")
        return redirect(next_url or "home")
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


@login_required
@require_http_methods(["GET", "POST"])
def org_create(request):
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            org = actions.do_create_organization(request.user, form.cleaned_data["name"], form.cleaned_data["slug"])
        except ActionError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"Organisation {org} created; you are its owner.")
            return redirect("dashboard", org_slug=org.slug)
    return render(request, "projects/org_create.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def join(request, org_slug: str, key: str):
    """Open an invitation link: show what it grants, accept on POST."""
    try:
        invitation = actions.find_invitation(org_slug, key)
    except ActionError as error:
        return render(
            request, "projects/join.html", {"error": error.message}, status=404 if error.code == "not_found" else 410
        )
    if request.method == "POST":
        try:
            membership = actions.do_accept_invitation(request.user, org_slug, key)
        except ActionError as error:
            return render(request, "projects/join.html", {"error": error.message}, status=409)
        messages.success(request, f"You joined {membership.organization} as {membership.get_role_display().lower()}.")
        return redirect("dashboard", org_slug=org_slug)
    return render(request, "projects/join.html", {"invitation": invitation})


# --- Health ----------------------------------------------------------------------------


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Database, Redis and at least one worker seen recently; 503 with the failing part otherwise."""
    from projects.health import readiness

    checks = readiness()
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


# --- Inside an organisation ----------------------------------------------------------------


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
                depends_on=(Organization, Membership, Project, Job, Agent, LanguageModel),
                build=lambda: render_to_string("projects/_dashboard_content.html", self.content_context(Agent)),
            )
        )
        return context

    def content_context(self, agent_model) -> dict:
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
            "sections": ["Models", "Datasets", "Analyses", "Students"],
        }


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


class SettingsView(OrgPageView):
    """Organisation settings: name, members, invitations; danger zone for owners."""

    template_name = "projects/settings.html"
    write_role = Role.ADMIN

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["members"] = self.scoped(Membership).select_related("user")
        context["invitations"] = self.scoped(Invitation).pending()
        context["roles"] = Role.choices
        context.setdefault("invitation_form", InvitationForm())
        context.setdefault("org_form", OrganizationForm(initial={"name": self.org.name, "slug": self.org.slug}))
        context["can_manage"] = self.membership.has_role(Role.ADMIN)
        context["is_owner"] = self.membership.role == Role.OWNER
        return context

    def post(self, request, *args, **kwargs):
        form = OrganizationForm(request.POST)
        if form.is_valid():
            actions.do_rename_organization(self.org, form.cleaned_data["name"])
            messages.success(request, "Organisation renamed.")
        return redirect("org-settings", org_slug=self.org.slug)


class InvitationCreateView(OrgView):
    write_role = Role.ADMIN

    def post(self, request, *args, **kwargs):
        form = InvitationForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose a role (and a valid e-mail address, if you give one).")
            return redirect("org-settings", org_slug=self.org.slug)
        try:
            invitation, key = actions.do_create_invitation(
                self.membership, form.cleaned_data["role"], form.cleaned_data["email"]
            )
        except ActionError as error:
            return self.action_failed(error, reverse("org-settings", kwargs={"org_slug": self.org.slug}))
        link = request.build_absolute_uri(reverse("join", kwargs={"org_slug": self.org.slug, "key": key}))
        messages.success(
            request,
            f"Invitation created for the {invitation.get_role_display().lower()} role. "
            f"Send this link; it works once and is shown only now: {link}",
        )
        return redirect("org-settings", org_slug=self.org.slug)


class InvitationRevokeView(OrgView):
    write_role = Role.ADMIN

    def post(self, request, invitation_id: int):
        invitation = self.get_scoped(Invitation, pk=invitation_id)
        try:
            actions.do_revoke_invitation(invitation)
            messages.success(request, "Invitation revoked.")
        except ActionError as error:
            messages.error(request, error.message)
        return redirect("org-settings", org_slug=self.org.slug)


class MemberView(OrgView):
    """POST: change a member's role, or remove them (admins; anyone may remove themselves)."""

    write_role = Role.VIEWER  # checked per action below: leaving is open to everyone

    def post(self, request, member_id: int, action: str):
        member = self.get_scoped(Membership, pk=member_id)
        settings_url = reverse("org-settings", kwargs={"org_slug": self.org.slug})
        is_self = member.pk == self.membership.pk
        if not (self.membership.has_role(Role.ADMIN) or (action == "remove" and is_self)):
            raise PermissionDenied("Managing members needs the admin role.")
        try:
            if action == "role":
                form = RoleForm(request.POST)
                if not form.is_valid():
                    raise ActionError("Choose a valid role.")
                actions.do_change_role(self.membership, member, form.cleaned_data["role"])
                messages.success(request, f"{member.user} is now {member.get_role_display().lower()}.")
            elif action == "remove":
                actions.do_remove_member(self.membership, member)
                if is_self:
                    messages.success(request, f"You left {self.org}.")
                    return redirect("home")
                messages.success(request, f"{member.user} was removed; their API tokens no longer work.")
            else:
                raise Http404
        except ActionError as error:
            messages.error(request, error.message)
        return redirect(settings_url)


class OrgDeleteView(OrgView):
    write_role = Role.OWNER

    def post(self, request, *args, **kwargs):
        form = DeleteOrganizationForm(request.POST)
        try:
            actions.do_delete_organization(self.org, confirm_slug=form.data.get("confirm", ""))
        except ActionError as error:
            return self.action_failed(error, reverse("org-settings", kwargs={"org_slug": self.org.slug}))
        messages.success(request, f"Organisation {self.org} and everything in it was deleted.")
        return redirect("home")


class TokenListView(OrgPageView):
    """Personal API tokens of the signed-in user in this organisation."""

    template_name = "projects/tokens.html"
    write_role = Role.VIEWER  # everyone may hold tokens; a token never exceeds its owner's role

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["tokens"] = self.scoped(ApiToken).filter(user=self.request.user)
        context.setdefault("form", TokenForm())
        return context

    def post(self, request, *args, **kwargs):
        form = TokenForm(request.POST)
        if form.is_valid():
            try:
                token, secret = actions.do_create_token(self.org, request.user, form.cleaned_data["name"])
            except ActionError as error:
                form.add_error("name", error.message)
            else:
                context = self.get_context_data(new_token=token, new_secret=secret)
                return self.render_to_response(context)
        return self.render_to_response(self.get_context_data(form=form), status=400)


class TokenRevokeView(OrgView):
    write_role = Role.VIEWER

    def post(self, request, token_id: int):
        token = self.get_scoped(ApiToken, pk=token_id, user=request.user)
        actions.do_revoke_token(token)
        messages.success(request, f"Token {token} revoked.")
        return redirect("tokens", org_slug=self.org.slug)


class SectionView(OrgPageView):
    """A section whose content arrives with a later capability (models, datasets, …)."""

    template_name = "section_empty.html"
    section: str = ""
    explanation: str = ""

    def get_context_data(self, **kwargs):
        return super().get_context_data(section=self.section, explanation=self.explanation, **kwargs)
