"""Pages outside any organisation: the home page, sign-up, creating an organisation, joining one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from projects import actions
from projects.actions import ActionError
from projects.forms.organization import OrganizationForm
from projects.models import Organization


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
