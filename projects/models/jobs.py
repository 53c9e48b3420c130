"""The row that records one piece of background work (status, progress, log tail, timings, artifacts), and the
vocabulary of its ``kind``: :class:`JobKind` and the registry of kinds.

The framework that runs jobs is :mod:`projects.background` (which re-exports the names defined here).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from projects.models.projects import Project
from projects.models.tenancy import Organization
from projects.tenancy import TenantModel

if TYPE_CHECKING:
    from projects.background import JobContext

QUEUES = ("default", "cpu", "gpu")


class JobKind:
    """A kind of background job.

    Subclasses set ``name`` (stable identifier stored on the row), ``title`` (what people
    read), ``queue`` and implement :meth:`run`. ``clean_params`` validates what a user
    may pass (raise ``ValueError`` with a message a person can act on).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    queue: ClassVar[str] = "default"
    #: Whether people can start this kind from the API's generic job endpoint.
    user_startable: ClassVar[bool] = False
    #: Whether the kind needs a project.
    needs_project: ClassVar[bool] = True

    @classmethod
    def clean_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        if params:
            raise ValueError(f"Job kind {cls.name!r} takes no parameters; got {sorted(params)}.")
        return {}

    def run(self, job: Job, ctx: JobContext) -> dict[str, Any] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def on_end_without_success(cls, job: Job, status: str, error: str) -> None:
        """Called once when a job of this kind fails, is cancelled or is declared dead.

        Kinds that keep state elsewhere (a model row "importing") put it right here, so
        nothing is left half-done or presented as complete.
        """


registry: dict[str, type[JobKind]] = {}


def register(kind: type[JobKind]) -> type[JobKind]:
    if kind.queue not in QUEUES:
        raise ValueError(f"{kind.__name__}.queue must be one of {QUEUES}, not {kind.queue!r}")
    registry[kind.name] = kind
    return kind


class Refused(Exception):
    """The job's input cannot be used; everything it left was deleted. The message says why and what to do."""


class JobCancelled(Exception):
    """Raised inside a running job when its row is no longer ``running`` (cancelled or reaped)."""


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(TenantModel):
    """One piece of background work and everything a person needs to follow it.

    State changes go through conditional updates in ``projects.background`` and
    ``projects.actions`` so that a cancelled or reaped job is never overwritten by a
    worker that is still finishing.
    """

    FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
    LOG_TAIL_CHARS = 20_000

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="jobs")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=80)
    queue = models.CharField(max_length=20, default="default")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0, validators=[MinValueValidator(0), MaxValueValidator(1)])
    message = models.CharField(max_length=300, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    #: Links to what the job produced: [{"label": ..., "url": ...}].
    artifacts = models.JSONField(default=list, blank=True)
    rq_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    worker = models.CharField(max_length=120, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="job_org_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"{self.title} #{self.pk}"

    @property
    def title(self) -> str:
        kind = registry.get(self.kind)
        return kind.title if kind else self.kind

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def can_cancel(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def can_retry(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def as_event(self) -> dict:
        """What the browser receives when this job changes (see static/js/live.js)."""
        return {
            "id": self.pk,
            "project": self.project.slug if self.project_id else None,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "status_label": self.get_status_display(),
            "progress": round(self.progress, 4),
            "percent": int(self.progress * 100),
            "message": self.message,
            "error": self.error,
            "finished": self.is_finished,
            "can_cancel": self.can_cancel,
            "can_retry": self.can_retry,
        }
