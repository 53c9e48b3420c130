"""`manage.py bootstrap_demo` (run by `make run`): the demo organisation with its teacher and datasets."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from projects.models import Job, LanguageModel, Organization, Project
from projects.models_datasets import Dataset


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
    assert "Log in as  admin /" in out.getvalue()
    with django_capture_on_commit_callbacks(execute=False):
        call_command("bootstrap_demo", stdout=StringIO())
    assert LanguageModel.objects.count() == 1 and Dataset.objects.count() == 3 and Organization.objects.count() == 1
