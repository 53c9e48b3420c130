"""Import a model that is already on this machine (design document 002: `hartonomous ingest --model`).

Same path as a browser upload: the files become blobs, the headers are checked, the model row
is created and its tensor inventory runs — here in this process, with progress on the terminal.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from projects.actions import ActionError
from projects.actions.teachers import do_import_model_files
from projects.models import Organization, Project, Role


class Command(BaseCommand):
    help = "Import a GGUF file, a Hugging Face folder or a zip of one from this machine into a project."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--name", default="", help="Model name (default: the file or folder name).")
        parser.add_argument(
            "--user", default="", help="Username recorded as creator (default: an owner of the organisation)."
        )
        parser.add_argument("--no-inventory", action="store_true", help="Leave the tensor inventory to a worker.")

    def handle(self, *args, path: Path, org: str, project: str, name: str, user: str, no_inventory: bool, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organisation {org!r}.")
        target = Project.objects.for_org(organization).filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project {project!r} in {organization}.")
        creator = self._creator(organization, user)
        try:
            model = do_import_model_files(
                path, target, creator, name=name, stdout=self.stdout, inline_inventory=not no_inventory
            )
        except ActionError as exc:
            raise CommandError(exc.message) from exc
        if model.status != "ready" and not no_inventory:
            raise CommandError(f"{model} was created but its inventory failed: {model.error}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{model} ({model.get_format_display()}, {model.parameter_count:,} parameters) is {model.status}."
            )
        )

    def _creator(self, organization, username: str):
        User = get_user_model()
        if username:
            user = User.objects.filter(username=username, memberships__organization=organization).first()
            if user is None:
                raise CommandError(f"{username!r} is not a member of {organization}.")
            return user
        return User.objects.filter(memberships__organization=organization, memberships__role=Role.OWNER).first()
