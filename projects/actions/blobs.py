"""Deleting rows that own blobs, and freeing the blobs nothing else references."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Model

from projects.actions.base import ActionError


def do_delete_owning_blobs(obj: Model, blob_shas: list[str]) -> None:
    """Delete a row unless something depends on it (PROTECT), then free its unreferenced blobs."""
    from django.db.models import ProtectedError

    from projects import blobs

    try:
        with transaction.atomic():
            obj.delete()
    except ProtectedError as exc:
        users = sorted({f"{o._meta.verbose_name} “{o}”" for o in exc.protected_objects})
        raise ActionError(
            f"{obj} cannot be deleted: {', '.join(users[:5])}{' and more' if len(users) > 5 else ''} "
            "depend on it. Delete those first.",
            code="conflict",
        ) from exc
    blobs.collect_garbage(only=[sha for sha in blob_shas if sha])
