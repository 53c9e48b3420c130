"""Base classes for the organisation-scoped htmx pages.

:class:`OrgView` resolves the organisation from ``/o/<org_slug>/…`` once per request,
answers 404 to anyone who is not a member, enforces the role needed for writes, and
offers :meth:`OrgView.scoped` — the only way its subclasses reach tenant rows.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.generic.base import ContextMixin, TemplateResponseMixin, View

from projects.actions import ActionError
from projects.models import Membership, Role

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def whole_number(value: str | None, default: int | None) -> int | None:
    """A form field's whole number (``65,536`` and ``65_536`` accepted), ``default`` when empty, else ActionError."""
    if value in (None, ""):
        return default
    try:
        return int(str(value).replace(",", "").replace("_", ""))
    except ValueError:
        raise ActionError(f"“{value}” is not a whole number.") from None


def decimal_number(value: str | None, default: float | None) -> float | None:
    """A form field's number (``3e-4``, ``0.0003``), ``default`` when empty, else ActionError."""
    if value in (None, ""):
        return default
    try:
        number = float(str(value).replace(",", "").replace("_", ""))
    except ValueError:
        raise ActionError(f"“{value}” is not a number.") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ActionError(f"“{value}” is not a finite number.")
    return number


def resolve_membership(user, org_slug: str) -> Membership:
    """The user's membership in the organisation with this slug, or 404 (never 403)."""
    if not user.is_authenticated:
        raise Http404
    try:
        # One indexed join (organisation slug, then the unique organisation/user pair); this runs
        # on every page and API request, so it stays the simplest query that answers it.
        membership = Membership.objects.select_related("organization").get(user=user, organization__slug=org_slug)
    except Membership.DoesNotExist:
        raise Http404("No such organisation.") from None
    membership.user = user
    return membership


def resolve_membership_among_all(user, org_slug: str) -> tuple[Membership, list[Membership]]:
    """Like :func:`resolve_membership`, with all of the user's memberships (by organisation
    name) from the same query: a page needs them for its organisation switcher anyway."""
    if not user.is_authenticated:
        raise Http404
    everywhere = sorted(
        Membership.objects.select_related("organization").filter(user=user).order_by(),
        key=lambda m: (m.organization.name, m.organization_id),
    )
    for membership in everywhere:
        membership.user = user
        if membership.organization.slug == org_slug:
            return membership, everywhere
    raise Http404("No such organisation.")


class OrgView(LoginRequiredMixin, TemplateResponseMixin, ContextMixin, View):
    """A page inside one organisation. Subclasses set ``template_name`` and the roles."""

    #: Role needed to read (GET).
    read_role: str = Role.VIEWER
    #: Role needed to change anything (POST, PUT, PATCH, DELETE).
    write_role: str = Role.MEMBER

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.membership, everywhere = resolve_membership_among_all(request.user, kwargs.pop("org_slug"))
        self.org = self.membership.organization
        request.org, request.membership = self.org, self.membership
        request.my_orgs = [m.organization for m in everywhere]  # the header's switcher (context_processors)
        needed = self.read_role if request.method in SAFE_METHODS else self.write_role
        if not self.membership.has_role(needed):
            raise PermissionDenied(f"This needs the {needed} role; you are {self.membership.role}.")
        return super().dispatch(request, *args, **kwargs)

    def scoped(self, model_or_queryset):
        """The rows of a model (or of a tenant queryset of it) in this organisation."""
        if isinstance(model_or_queryset, QuerySet):
            return model_or_queryset.for_org(self.org)
        return model_or_queryset.objects.for_org(self.org)

    def get_scoped(self, model, **lookups):
        return get_object_or_404(self.scoped(model), **lookups)

    def get_context_data(self, **kwargs):
        kwargs.setdefault("org", self.org)
        kwargs.setdefault("membership", self.membership)
        return super().get_context_data(**kwargs)

    @property
    def is_htmx(self) -> bool:
        return self.request.headers.get("HX-Request") == "true"

    def action_failed(self, error: ActionError, redirect_to: str, **context) -> HttpResponse:
        """Show an action's message: in the form (htmx / re-render) or as a flash message."""
        messages.error(self.request, error.message)
        return redirect(redirect_to)


class OrgPageView(OrgView):
    """An OrgView that renders ``template_name`` on GET."""

    def get(self, request, *args, **kwargs):
        return self.render_to_response(self.get_context_data(**kwargs))
