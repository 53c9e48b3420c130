"""Job lifecycle with a real Redis and a real RQ worker process."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from projects import actions
from projects.models import Job, JobStatus
from projects.routing import websocket_urlpatterns
from tests.conftest import wait_for_job

pytestmark = pytest.mark.worker


def test_recount_job_succeeds_through_the_api(actors, api_as, start_worker):
    worker = start_worker()
    api = api_as(actors.member)
    response = api.post(
        f"/api/v1/orgs/{actors.org.slug}/jobs/",
        {"kind": "projects.recount_stats", "project": actors.project.slug},
        format="json",
    )
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == JobStatus.QUEUED
    job = wait_for_job(job, lambda j: j.is_finished, worker=worker)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.progress == 1.0
    assert job.started_at and job.finished_at and job.finished_at >= job.started_at
    assert job.result["members"] == 4
    assert "counted members" in job.log
    actors.project.refresh_from_db()
    assert actors.project.stats["members"] == 4
    detail = api.get(f"/api/v1/orgs/{actors.org.slug}/jobs/{job.pk}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 1.0


def test_failing_job_records_the_error(actors, start_worker):
    worker = start_worker()
    job = actions.do_enqueue_job(actors.org, "tests.failing", user=actors.member)
    job = wait_for_job(job, lambda j: j.is_finished, worker=worker)
    assert job.status == JobStatus.FAILED
    assert job.error == "ValueError: the input file has no rows; upload a file with at least one row"
    assert "Traceback" in job.log
    assert job.progress == 0.5  # where it stopped, not 100 %


def test_cancel_queued_job_never_runs(actors, api_as, start_worker):
    job = actions.do_enqueue_job(actors.org, "tests.slow_count", user=actors.member, params={"steps": 2})
    response = api_as(actors.member).post(f"/api/v1/orgs/{actors.org.slug}/jobs/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    worker = start_worker()
    probe = actions.do_enqueue_job(actors.org, "tests.slow_count", user=actors.member, params={"steps": 1, "delay": 0})
    wait_for_job(probe, lambda j: j.is_finished, worker=worker)  # the worker has drained the queue
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.started_at is None


def test_cancel_running_job_stops_it(actors, api_as, start_worker):
    worker = start_worker()
    job = actions.do_enqueue_job(
        actors.org, "tests.slow_count", user=actors.member, params={"steps": 100, "delay": 0.1}
    )
    wait_for_job(job, lambda j: j.status == JobStatus.RUNNING and j.progress > 0, worker=worker)
    response = api_as(actors.member).post(f"/api/v1/orgs/{actors.org.slug}/jobs/{job.pk}/cancel/")
    assert response.status_code == 200
    job.refresh_from_db()
    progress_at_cancel = job.progress
    time.sleep(1.5)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.progress == progress_at_cancel  # the worker wrote nothing after the cancel
    # Retrying a cancelled job queues a new one that runs to the end.
    retry = api_as(actors.member).post(f"/api/v1/orgs/{actors.org.slug}/jobs/{job.pk}/retry/")
    assert retry.status_code == 201
    new_job = Job.objects.get(pk=retry.json()["id"])
    assert new_job.retry_of_id == job.pk
    wait_for_job(new_job, lambda j: j.status == JobStatus.RUNNING, worker=worker)


def test_sigkilled_worker_leaves_job_failed_after_heartbeat_window(actors, api_as, start_worker, settings):
    worker = start_worker()
    job = actions.do_enqueue_job(actors.org, "tests.silent_sleep", user=actors.member, params={"seconds": 60})
    wait_for_job(job, lambda j: j.status == JobStatus.RUNNING, worker=worker)
    time.sleep(1.2)  # the heartbeat thread keeps the job alive while it sleeps
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    worker.kill()  # SIGKILL to the worker and its work horse
    api = api_as(actors.member)
    # Within the heartbeat window the job still looks running ...
    assert api.get(f"/api/v1/orgs/{actors.org.slug}/jobs/{job.pk}/").json()["status"] == "running"
    time.sleep(settings.JOB_HEARTBEAT_TIMEOUT + 1.5)
    # ... after it, whoever looks sees it failed, with a message saying what to do.
    body = api.get(f"/api/v1/orgs/{actors.org.slug}/jobs/{job.pk}/").json()
    assert body["status"] == "failed"
    assert "stopped responding" in body["error"] and "Retry" in body["error"]


def test_progress_arrives_over_the_websocket(actors, start_worker):
    start_worker()

    async def watch():
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/o/{actors.org.slug}/jobs/")
        communicator.scope["user"] = actors.viewer
        connected, _ = await communicator.connect()
        assert connected
        from channels.db import database_sync_to_async

        job = await database_sync_to_async(actions.do_enqueue_job)(
            actors.org, "tests.slow_count", user=actors.member, params={"steps": 4, "delay": 0.2}
        )
        seen = []
        while True:
            message = await communicator.receive_json_from(timeout=20)
            assert message["type"] == "job"
            if message["job"]["id"] != job.pk:
                continue
            seen.append(message["job"])
            if message["job"]["finished"]:
                break
        await communicator.disconnect()
        return seen

    seen = async_to_sync(watch)()
    statuses = [event["status"] for event in seen]
    progress = [event["progress"] for event in seen]
    assert statuses[-1] == "succeeded"
    assert "running" in statuses
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert len({p for p in progress}) >= 4  # intermediate steps, not just start and end


def test_outsider_websocket_is_refused(actors, transactional_db):
    async def attempt(user, slug):
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/o/{slug}/jobs/")
        communicator.scope["user"] = user
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    assert async_to_sync(attempt)(actors.outsider, actors.org.slug) == (False, 4404)
    assert async_to_sync(attempt)(actors.owner, "no-such-org") == (False, 4404)
    assert async_to_sync(attempt)(actors.viewer, actors.org.slug)[0] is True
