"""Actions: everything that changes more than one row, or must keep an invariant across rows.

Views, API viewsets, consumers and jobs call these; they never write tenant rows themselves. Errors a person
can act on are raised as :class:`ActionError`. One module per area (Zulip's ``zerver/actions/``); the
platform-wide ones are re-exported here (``from projects.actions import do_enqueue_job``), the area ones are
imported by module: ``projects.actions.teachers``, ``.datasets``, ``.conversion``.
"""

from projects.actions.base import RESERVED_SLUGS, ActionError, clean_slug
from projects.actions.blobs import do_delete_owning_blobs
from projects.actions.jobs import do_cancel_job, do_enqueue_job, do_retry_job
from projects.actions.projects import do_archive_project, do_create_project, do_update_project
from projects.actions.tenancy import (
    do_accept_invitation,
    do_change_role,
    do_create_invitation,
    do_create_organization,
    do_create_token,
    do_delete_organization,
    do_remove_member,
    do_rename_organization,
    do_revoke_invitation,
    do_revoke_token,
    find_invitation,
)
from projects.actions.uploads import do_start_upload

__all__ = [
    "ActionError",
    "RESERVED_SLUGS",
    "clean_slug",
    "do_accept_invitation",
    "do_archive_project",
    "do_cancel_job",
    "do_change_role",
    "do_create_invitation",
    "do_create_organization",
    "do_create_project",
    "do_create_token",
    "do_delete_organization",
    "do_delete_owning_blobs",
    "do_enqueue_job",
    "do_remove_member",
    "do_rename_organization",
    "do_retry_job",
    "do_revoke_invitation",
    "do_revoke_token",
    "do_start_upload",
    "do_update_project",
    "find_invitation",
]
