"""Projects: the folder inside an organisation that teachers, datasets, analyses and students belong to."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.text import slugify

from projects.models.tenancy import Organization
from projects.tenancy import TenantModel, TenantQuerySet


class ProjectQuerySet(TenantQuerySet):
    def active(self) -> ProjectQuerySet:
        return self.filter(archived_at__isnull=True)


class Project(TenantModel):
    """A unit of work inside an organisation: its models, datasets, analyses, students, agents."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)
    #: Figures recomputed by the "recount statistics" job.
    stats = models.JSONField(default=dict, blank=True)
    stats_updated_at = models.DateTimeField(null=True, blank=True)

    objects = models.Manager.from_queryset(ProjectQuerySet)()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="uniq_project_slug")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @staticmethod
    def slug_for(name: str) -> str:
        return slugify(name)[:60]
