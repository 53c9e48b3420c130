"""`manage.py bootstrap_demo` (run by `make run`): the demo organisation with its teacher and datasets."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command

from projects.actions.datasets import COUNT_TOKENS_JOB, PROCESS_JOB
from projects.models import Job, LanguageModel, Organization, Project
from projects.models.datasets import Dataset
from tests.conftest import wait_for_job


def test_bootstrap_demo_is_complete_and_idempotent(db, django_capture_on_commit_callbacks):
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        call_command("bootstrap_demo", stdout=out)
    org = Organization.objects.get(slug="demo")
    project = Project.objects.for_org(org).get(name="Medical assistant")
    teacher = LanguageModel.objects.for_org(org).get(project=project)
    assert teacher.name == "SmolLM2-135M-Instruct" and teacher.format == "gguf" and teacher.architecture == "llama"
    assert teacher.metadata["block_count"] == 30 and teacher.can("chat") and teacher.can("analysis")
    assert Job.objects.filter(kind="projects.inventory_model", params__model=teacher.pk).exists()
    roles = sorted(Dataset.objects.for_org(org).values_list("role", flat=True))
    assert roles == ["control", "domain", "prompt_pairs"]
    # Each processing job starts the token count with the teacher's tokenizer when it is done.
    processing = Job.objects.filter(kind=PROCESS_JOB)
    assert processing.count() == 3 and all(job.params["count_tokens_with"] == teacher.pk for job in processing)
    assert "Log in as  admin /" in out.getvalue() and "Counting the tokens of" in out.getvalue()
    with django_capture_on_commit_callbacks(execute=False):
        call_command("bootstrap_demo", stdout=StringIO())
    assert LanguageModel.objects.count() == 1 and Dataset.objects.count() == 3 and Organization.objects.count() == 1
    assert Job.objects.filter(kind=PROCESS_JOB).count() == 3
    assert not Job.objects.filter(kind=COUNT_TOKENS_JOB).exists()  # still processing: their jobs will count
    # An agent on the teacher waits to be deployed (once, however often the command runs).
    from runtime.models import Agent

    agent = Agent.objects.for_org(org).get()
    assert (agent.slug, agent.model_id, agent.status, agent.context_length) == (
        "medical-assistant",
        teacher.pk,
        "undeployed",
        2048,
    )


def test_the_demo_dashboard_counts_what_the_demo_organisation_has(db, client, django_capture_on_commit_callbacks):
    """What a new user sees first: one teacher, three datasets; no card says 0 of something that exists."""
    from django.core.cache import cache
    from django.urls import reverse

    with django_capture_on_commit_callbacks(execute=False):
        call_command("bootstrap_demo", stdout=StringIO())
    cache.clear()
    org = Organization.objects.get(slug="demo")
    owner = org.memberships.get(role="owner").user
    client.force_login(owner)
    page = client.get(reverse("dashboard", kwargs={"org_slug": org.slug})).content.decode()
    assert "<strong>1</strong> model</a>" in page and "<strong>3</strong> datasets</a>" in page
    # Zero only of what the demo has none of yet: running jobs, captures, training runs, recipes, builds.
    zeros = set(re.findall(r"<strong>0</strong> ([a-z ]+)", page))
    none_yet = {"jobs queued or running", "activation captures", "transcoder training runs", "student recipes",
                "student builds"}  # fmt: skip
    assert zeros <= none_yet, zeros
    assert "not built yet" not in page


@pytest.mark.worker
def test_demo_token_counts_start_by_themselves_once(start_worker):
    worker = start_worker()
    call_command("bootstrap_demo", stdout=StringIO())
    org = Organization.objects.get(slug="demo")
    teacher = LanguageModel.objects.for_org(org).get()

    def counted() -> list[Job]:
        return list(Job.objects.filter(kind=COUNT_TOKENS_JOB).order_by("pk"))

    for job in Job.objects.filter(kind=PROCESS_JOB):
        wait_for_job(job, lambda j: j.status == "succeeded", timeout=120, worker=worker)
    jobs = counted()
    assert len(jobs) == 3
    for job in jobs:
        wait_for_job(job, lambda j: j.status == "succeeded", timeout=120, worker=worker)
        assert job.params["source"] == "model" and job.params["source_id"] == str(teacher.pk)
    for dataset in Dataset.objects.for_org(org):
        assert dataset.token_count and dataset.token_count > dataset.document_count, dataset
        assert dataset.tokenizer.startswith("GGUF vocabulary of model “SmolLM2-135M-Instruct”")

    # Counts exist: a second bootstrap starts nothing.
    call_command("bootstrap_demo", stdout=StringIO())
    assert len(counted()) == 3
    # A ready dataset without counts (from an earlier version, say) is counted by the next bootstrap, once.
    medquad = Dataset.objects.for_org(org).get(role="domain")
    tokens = medquad.token_count
    Dataset.objects.filter(pk=medquad.pk).update(token_count=None, tokenizer="")
    call_command("bootstrap_demo", stdout=StringIO())
    call_command("bootstrap_demo", stdout=StringIO())  # queued, running or done by now: not again
    jobs = counted()
    assert len(jobs) == 4 and jobs[-1].params["dataset"] == medquad.pk
    wait_for_job(jobs[-1], lambda j: j.status == "succeeded", timeout=120, worker=worker)
    medquad.refresh_from_db()
    assert medquad.token_count == tokens  # counted again, the same: never estimated
