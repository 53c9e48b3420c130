"""Starting a chunked upload."""

from __future__ import annotations

from django.contrib.auth.models import User

from projects.actions.base import ActionError
from projects.models import (
    Project,
    Upload,
)


def do_start_upload(
    project: Project, user: User, *, filename: str, size: int, relative_path: str = "", expected_sha256: str = ""
) -> Upload:
    """Open a resumable upload into a project."""
    from django.conf import settings

    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", ".."):
        raise ActionError("The file needs a name.", field="filename")
    if size <= 0:
        raise ActionError(f"{name} is empty: there is nothing to upload.", field="size")
    if size > settings.UPLOAD_MAX_BYTES:
        raise ActionError(
            f"{name} is {size} bytes, more than this platform accepts ({settings.UPLOAD_MAX_BYTES} bytes; "
            "UPLOAD_MAX_BYTES). Import it on the server with `manage.py import_model` instead.",
            field="size",
        )
    if project.is_archived:
        raise ActionError(f"Project {project} is archived; unarchive it to upload.", field="project")
    relative = relative_path.replace("\\", "/").strip("/")
    if ".." in relative.split("/"):
        raise ActionError("The relative path may not contain “..”.", field="relative_path")
    return Upload.objects.create(
        organization=project.organization,
        project=project,
        filename=name,
        relative_path=relative,
        size=size,
        expected_sha256=expected_sha256.lower(),
        created_by=user,
    )
