"""Enqueueing, cancelling and retrying background jobs (the framework that runs them is
:mod:`projects.background`).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from projects.actions.base import ActionError
from projects.background import notify_end_without_success, publish_job_event, registry
from projects.models import (
    Job,
    JobStatus,
    Organization,
    Project,
)


def do_enqueue_job(
    org: Organization,
    kind: str,
    *,
    user: User | None = None,
    project: Project | None = None,
    params: dict[str, Any] | None = None,
    retry_of: Job | None = None,
    enqueue: bool = True,
) -> Job:
    """Create a job row and enqueue it once the surrounding transaction commits.

    ``enqueue=False`` leaves it queued for the caller to run in its own process
    (`background.execute`), as command-line imports do.
    """
    kind_cls = registry.get(kind)
    if kind_cls is None:
        raise ActionError(f"Unknown job kind “{kind}”; known kinds: {', '.join(sorted(registry))}.", field="kind")
    if project is not None and project.organization_id != org.pk:
        raise ActionError("That project does not exist.", field="project", code="not_found")
    if kind_cls.needs_project and project is None:
        raise ActionError(f"{kind_cls.title} needs a project.", field="project")
    if project is not None and project.is_archived:
        raise ActionError(f"Project {project} is archived; unarchive it to run jobs.", field="project")
    try:
        params = kind_cls.clean_params(dict(params or {}))
    except ValueError as exc:
        raise ActionError(str(exc), field="params") from exc
    job = Job.objects.create(
        organization=org,
        project=project,
        kind=kind,
        queue=kind_cls.queue,
        params=params,
        created_by=user,
        retry_of=retry_of,
        message="Waiting for a worker",
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(job))
    return job


def _enqueue(job: Job) -> None:
    import django_rq

    from projects.background import execute

    try:
        django_rq.get_queue(job.queue).enqueue(
            execute, job.pk, job_id=str(job.rq_id), failure_ttl=7 * 24 * 3600, result_ttl=3600
        )
    except Exception as exc:  # noqa: BLE001 - Redis down: say so on the job instead of losing it
        Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            finished_at=timezone.now(),
            message="Not queued",
            error=f"Could not reach the job queue ({type(exc).__name__}: {exc}). Check that Redis is running, then "
            "retry.",
        )
        job.refresh_from_db()
        notify_end_without_success(job)
    publish_job_event(job)


def do_cancel_job(job: Job) -> Job:
    """Cancel a queued or running job. A running worker is told to stop at once."""
    if not job.can_cancel:
        raise ActionError(f"This job has already {job.status}; there is nothing to cancel.", code="conflict")
    was_running = job.status == JobStatus.RUNNING
    updated = Job.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled"
    )
    job.refresh_from_db()
    if not updated:
        raise ActionError(f"This job has just {job.status}; there is nothing to cancel.", code="conflict")
    _stop_rq_job(job, was_running)
    publish_job_event(job)
    notify_end_without_success(job)
    return job


def _stop_rq_job(job: Job, running: bool) -> None:
    import django_rq
    from rq.command import send_stop_job_command
    from rq.exceptions import InvalidJobOperation, NoSuchJobError
    from rq.job import Job as RQJob

    connection = django_rq.get_connection(job.queue)
    try:
        if running:
            send_stop_job_command(connection, str(job.rq_id))
        else:
            RQJob.fetch(str(job.rq_id), connection=connection).cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass  # already gone from the queue; the row says cancelled and execute() skips it
    except Exception:  # noqa: BLE001 - Redis down: the row is cancelled; execute() will skip it
        import logging

        logging.getLogger("hartonomous.jobs").warning("could not signal RQ for job %s", job.pk, exc_info=True)


def do_retry_job(job: Job, user: User) -> Job:
    if not job.can_retry:
        raise ActionError(f"Only failed or cancelled jobs can be retried; this one is {job.status}.", code="conflict")
    return do_enqueue_job(job.organization, job.kind, user=user, project=job.project, params=job.params, retry_of=job)
