"""Create the demo organisation and an admin user (idempotent); print where to log in."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from projects import actions
from projects.models import Membership, Organization, Project, Role

DEMO_ORG_SLUG = "demo"
DEMO_PROJECT = "Medical assistant"


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
        password = password_file.read_text().strip() if password_file.exists() else "(set earlier; change it with `manage.py changepassword`)"

        org = Organization.objects.filter(slug=DEMO_ORG_SLUG).first()
        if org is None:
            org = actions.do_create_organization(user, "Demo organisation", DEMO_ORG_SLUG)
        elif not Membership.objects.for_org(org).filter(user=user).exists():
            Membership.objects.create(organization=org, user=user, role=Role.OWNER)
        project = Project.objects.for_org(org).filter(slug=Project.slug_for(DEMO_PROJECT)).first()
        if project is None:
            actions.do_create_project(
                org, user, DEMO_PROJECT,
                description="Build a small medical question-answering agent from the SmolLM2 teacher.",
            )
        self.stdout.write(self.style.SUCCESS(
            f"\n  Hartonomous is at {url}\n"
            f"  Log in as  {username} / {password}\n"
            f"  Demo organisation: {url}o/{org.slug}/\n"
        ))
