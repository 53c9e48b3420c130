"""Tenant scoping: the one place that decides which rows an organisation can see.

Every tenant-owned model declares ``tenant_field`` (the lookup path to its
``Organization``) and uses :class:`TenantManager`. Views, API viewsets, consumers and
jobs fetch rows only through ``Model.objects.for_org(org)``; the base classes in
``projects.views.base``, ``projects.api.base`` and ``projects.consumers.base`` apply it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.models import User
from django.db import models

from projects.tenant_cache import TrackedWritesQuerySet

if TYPE_CHECKING:  # pragma: no cover
    from projects.models import Organization


class TenantQuerySet(TrackedWritesQuerySet):
    def for_org(self, org: Organization) -> TenantQuerySet:
        """Rows belonging to ``org`` (and nothing else)."""
        return self.filter(**{self.model.tenant_field: org})

    def for_user(self, user: User) -> TenantQuerySet:
        """Rows of every organisation ``user`` is a member of."""
        if not user or not user.is_authenticated:
            return self.none()
        member_path = (
            f"{self.model.tenant_field}__memberships__user" if self.model.tenant_field else "memberships__user"
        )
        return self.filter(**{member_path: user})


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):
    """Manager of a tenant-owned model; see the module docstring."""


class TenantModel(models.Model):
    """Base for every model owned by an organisation.

    Subclasses set ``tenant_field`` to the lookup path of their organisation, e.g.
    ``"organization"`` or ``"project__organization"``.
    """

    tenant_field: str = "organization"

    objects = TenantManager()

    class Meta:
        abstract = True

    @property
    def tenant(self) -> Organization:
        obj = self
        for part in self.tenant_field.split("__"):
            obj = getattr(obj, part)
        return obj
