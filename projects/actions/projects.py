"""Creating, editing and archiving projects."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from projects.actions.base import ActionError, clean_slug
from projects.models import (
    Organization,
    Project,
)


@transaction.atomic
def do_create_project(org: Organization, user: User, name: str, slug: str = "", description: str = "") -> Project:
    name = name.strip()
    if not name:
        raise ActionError("The project needs a name.", field="name")
    slug = clean_slug(slug or name)
    if Project.objects.for_org(org).filter(slug=slug).exists():
        raise ActionError(
            f"A project with the address “{slug}” already exists in {org}; choose another name or slug.",
            field="slug",
            code="duplicate",
        )
    return Project.objects.create(organization=org, name=name, slug=slug, description=description, created_by=user)


def do_update_project(project: Project, *, name: str | None = None, description: str | None = None) -> Project:
    if name is not None:
        if not name.strip():
            raise ActionError("The project needs a name.", field="name")
        project.name = name.strip()
    if description is not None:
        project.description = description
    project.save(update_fields=["name", "description"])
    return project


def do_archive_project(project: Project, archived: bool = True) -> Project:
    project.archived_at = timezone.now() if archived else None
    project.save(update_fields=["archived_at"])
    return project
