"""Base viewset for everything under /api/v1/orgs/<org_slug>/.

It resolves the organisation once per request (from the URL, cross-checked with the
API token's organisation), answers 404 to non-members, enforces roles (reads need
``read_role``, writes ``write_role``) and scopes ``get_queryset`` to the organisation.
Subclasses set ``model`` and never filter by organisation themselves.
"""

from __future__ import annotations

from django.http import Http404
from rest_framework import permissions, viewsets
from rest_framework.response import Response

from projects import tenant_cache
from projects.models import ApiToken, Role
from projects.views.base import SAFE_METHODS, resolve_membership


class OrgRolePermission(permissions.BasePermission):
    message = "Your role in this organisation does not allow this."

    def has_permission(self, request, view) -> bool:
        membership = getattr(view, "membership", None)
        if membership is None:
            return False
        needed = view.read_role if request.method in SAFE_METHODS else view.get_write_role()
        if not membership.has_role(needed):
            self.message = f"This needs the {needed} role; you are {membership.role}."
            return False
        return True


class OrgScopedMixin:
    model = None
    read_role: str = Role.VIEWER
    write_role: str = Role.MEMBER
    permission_classes = [permissions.IsAuthenticated, OrgRolePermission]

    def initial(self, request, *args, **kwargs):
        self.perform_authentication(request)
        if request.user and request.user.is_authenticated:
            self.resolve_org(request, kwargs.get("org_slug"))
        super().initial(request, *args, **kwargs)

    def resolve_org(self, request, org_slug: str) -> None:
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None:
            if token.organization.slug != org_slug:
                raise Http404  # a token never reaches another organisation, not even to learn it exists
            self.membership = token.membership  # checked by BearerTokenAuthentication a moment ago
        else:
            self.membership = resolve_membership(request.user, org_slug)
        self.org = self.membership.organization

    def get_write_role(self) -> str:
        return self.write_role

    #: Query parameters that narrow a list: parameter name -> field lookup.
    filter_params: dict[str, str] = {}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return self.model.objects.none()
        queryset = self.model.objects.for_org(self.org)
        for param, lookup in self.filter_params.items():
            if self.request.query_params.get(param):
                queryset = queryset.filter(**{lookup: self.request.query_params[param]})
        return queryset

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["org"] = getattr(self, "org", None)
        return context


class OrgScopedViewSet(OrgScopedMixin, viewsets.GenericViewSet):
    lookup_value_regex = r"[^/]+"


class CachedListMixin:
    """``list`` answered from the organisation's cache while the listed rows are unchanged.

    The page is kept per full URL (filters, pagination, host in the next/previous links) and
    thrown away when a row of ``model`` (or of ``cache_depends_on``) in the organisation is
    written (``projects/tenant_cache.py``); the model must be tracked.
    """

    cache_depends_on: tuple = ()

    def list(self, request, *args, **kwargs):
        page = tenant_cache.cached(
            self.org.pk,
            f"api:{type(self).__name__}:{request.build_absolute_uri()}",
            depends_on=(self.model, *self.cache_depends_on),
            build=lambda: super(CachedListMixin, self).list(request, *args, **kwargs).data,
        )
        return Response(page)
