"""The job layer: how background work is enqueued, run and watched.

A kind subclasses :class:`JobKind` in its app's ``jobs`` package and is registered with ``@register``
(both are defined beside the ``Job`` row, in :mod:`projects.models.jobs`, since they are the vocabulary of its
``kind``; re-exported here). ``projects.actions.do_enqueue_job`` creates the ``Job`` row and enqueues
:func:`execute` with the row's id once the transaction commits. :func:`execute` runs in the RQ worker: it claims
the row, keeps a heartbeat, hands the kind a :class:`JobContext` for progress and logs, and records the outcome.

Every state change is a conditional UPDATE on the row's current status, so a job that
was cancelled or declared dead while its worker was still busy is never overwritten.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import traceback
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from projects.models.jobs import QUEUES, Job, JobCancelled, JobKind, Refused, register, registry

logger = logging.getLogger("hartonomous.jobs")

__all__ = [
    "QUEUES",
    "JobCancelled",
    "JobContext",
    "JobKind",
    "Refused",
    "autodiscover",
    "execute",
    "notify_end_without_success",
    "org_jobs_group",
    "publish_job_event",
    "reap_stale_jobs",
    "register",
    "registry",
]


def autodiscover() -> None:
    """Import every installed app's ``jobs`` module, then ``settings.JOB_EXTRA_MODULES``."""
    for config in apps.get_app_configs():
        try:
            importlib.import_module(f"{config.name}.jobs")
        except ModuleNotFoundError as exc:
            if exc.name != f"{config.name}.jobs":
                raise
    for module in settings.JOB_EXTRA_MODULES:
        importlib.import_module(module)


class JobContext:
    """What a running job uses to report: progress, a message, log lines, artifacts."""

    #: Minimum seconds between two progress writes to the database (the last one always lands).
    MIN_WRITE_INTERVAL = 0.2

    def __init__(self, job: Job) -> None:
        self.job = job
        self._last_write = 0.0
        self._log_lines: list[str] = []

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        """Record progress (0..1) and an optional message; raise JobCancelled if cancelled."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        self.job.progress = fraction
        if message is not None:
            self.job.message = message[:300]
        now = time.monotonic()
        if not force and now - self._last_write < self.MIN_WRITE_INTERVAL:
            return
        self._last_write = now
        logger.info("[job %s %s] %3d%% %s", self.job.pk, self.job.kind, int(fraction * 100), self.job.message)
        self._save(progress=self.job.progress, message=self.job.message)

    def log(self, line: str) -> None:
        """Append a line to the job's log tail (and the worker log)."""
        logger.info("[job %s %s] %s", self.job.pk, self.job.kind, line)
        stamp = timezone.now().strftime("%H:%M:%S")
        self.job.log = (self.job.log + f"{stamp} {line}\n")[-self.job.LOG_TAIL_CHARS :]
        self._save(log=self.job.log)

    def add_artifact(self, label: str, url: str) -> None:
        self.job.artifacts = [*self.job.artifacts, {"label": label, "url": url}]
        self._save(artifacts=self.job.artifacts)

    def check_cancelled(self) -> None:
        """For loops that report rarely: raise JobCancelled if the job was cancelled."""
        from projects.models import Job, JobStatus

        if not Job.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING).exists():
            raise JobCancelled()

    def _save(self, **fields: Any) -> None:
        from projects.models import Job, JobStatus

        fields["heartbeat_at"] = timezone.now()
        if not Job.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING).update(**fields):
            raise JobCancelled()
        publish_job_event(self.job)


def publish_job_event(job: Job) -> None:
    """Push the job's state to browsers watching its organisation (best effort)."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            org_jobs_group(job.organization_id), {"type": "job.update", "job": job.as_event()}
        )
    except Exception:  # noqa: BLE001 - realtime is a convenience; the row is the truth
        logger.warning("could not publish progress of job %s", job.pk, exc_info=True)


def org_jobs_group(org_id: int) -> str:
    return f"org-{org_id}-jobs"


class _Heartbeat(threading.Thread):
    """Touches ``heartbeat_at`` while the job runs, so a killed worker is detected."""

    def __init__(self, job_id: int) -> None:
        super().__init__(name=f"job-{job_id}-heartbeat", daemon=True)
        self.job_id = job_id
        self.stopped = threading.Event()

    def run(self) -> None:
        from projects.models import Job, JobStatus

        try:
            while not self.stopped.wait(settings.JOB_HEARTBEAT_INTERVAL):
                Job.objects.filter(pk=self.job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
        finally:
            connection.close()


def execute(job_id: int) -> None:
    """RQ entry point: run the job with this id (a plain id; the row is re-read here)."""
    from projects.models import Job, JobStatus

    close_old_connections()
    now = timezone.now()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, worker=worker, message="Started"
    )
    if not claimed:
        logger.info("job %s is no longer queued (cancelled or already run); skipping", job_id)
        return
    job = Job.objects.select_related("organization", "project").get(pk=job_id)
    publish_job_event(job)
    kind_cls = registry.get(job.kind)
    heartbeat = _Heartbeat(job.pk)
    heartbeat.start()
    ctx = JobContext(job)
    try:
        if kind_cls is None:
            raise LookupError(f"Unknown job kind {job.kind!r}: the worker runs a different version of the code.")
        result = kind_cls().run(job, ctx) or {}
    except JobCancelled:
        logger.info("job %s stopped: it was cancelled or declared dead", job.pk)
        job.refresh_from_db()
        notify_end_without_success(job)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the row
        logger.exception("job %s failed", job.pk)
        tail = (job.log + traceback.format_exc())[-Job.LOG_TAIL_CHARS :]
        _finish(job, JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}", log=tail, message="Failed")
    else:
        _finish(job, JobStatus.SUCCEEDED, result=result, progress=1.0, message=job.message or "Done")
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)
        close_old_connections()


def _finish(job: Job, status: str, **fields: Any) -> None:
    from projects.models import Job, JobStatus

    fields.update(status=status, finished_at=timezone.now(), heartbeat_at=timezone.now())
    if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(**fields):
        job.refresh_from_db()
        publish_job_event(job)
    else:
        job.refresh_from_db()
    if job.status != JobStatus.SUCCEEDED:
        notify_end_without_success(job)


def notify_end_without_success(job: Job) -> None:
    """Let the job's kind tidy up after a failure, cancel or death (best effort, logged)."""
    kind = registry.get(job.kind)
    if kind is None:
        return
    try:
        kind.on_end_without_success(job, job.status, job.error or job.message)
    except Exception:  # noqa: BLE001 - tidying must not hide the job's own outcome
        logger.exception("clean-up after job %s (%s) failed", job.pk, job.status)


_last_reap = 0.0


def reap_stale_jobs(force: bool = False) -> int:
    """Mark running jobs whose heartbeat stopped as failed. Returns how many.

    Called on the read paths (job pages, API, dashboard, /readyz), by workers at start
    and by ``manage.py reap_jobs``: whoever looks at a job sees the truth.
    """
    global _last_reap
    from projects.models import Job, JobStatus

    now_mono = time.monotonic()
    if not force and now_mono - _last_reap < 1.0:
        return 0
    _last_reap = now_mono
    timeout = settings.JOB_HEARTBEAT_TIMEOUT
    cutoff = timezone.now() - timedelta(seconds=timeout)
    reaped = 0
    for job in Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).select_related("organization"):
        error = (
            f"The worker stopped responding (no heartbeat for {int(timeout)} s; it was probably "
            f"killed or its machine restarted). Nothing it was writing was kept. Retry the job."
        )
        if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).update(
            status=JobStatus.FAILED, error=error, finished_at=timezone.now(), message="Worker lost"
        ):
            reaped += 1
            job.refresh_from_db()
            logger.warning("job %s declared failed: %s", job.pk, error)
            publish_job_event(job)
            notify_end_without_success(job)
    return reaped
