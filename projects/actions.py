"""Everything that changes more than one row, or must keep an invariant across rows.

Views, API viewsets and consumers call these; they never write tenant rows themselves.
Errors a person can act on are raised as :class:`ActionError` with a message for them.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from projects.jobs_base import notify_end_without_success, publish_job_event, registry
from projects.models import (
    ApiToken,
    Invitation,
    Job,
    JobStatus,
    Membership,
    Organization,
    Project,
    Role,
    Upload,
    hash_secret,
)


class ActionError(Exception):
    """A request that cannot be carried out, with a message for the person who made it.

    ``field`` names the input at fault, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


# --- Organisations ---------------------------------------------------------------------

RESERVED_SLUGS = {"new", "api", "admin", "static", "media", "accounts", "o", "orgs", "join", "healthz", "readyz"}


def clean_slug(value: str, *, source: str = "name") -> str:
    slug = slugify(value)[:60]
    if not slug:
        raise ActionError(f"Choose a {source} with at least one letter or digit.", field="slug")
    return slug


@transaction.atomic
def do_create_organization(user, name: str, slug: str = "") -> Organization:
    """Create an organisation; its creator becomes the owner."""
    name = name.strip()
    if not name:
        raise ActionError("The organisation needs a name.", field="name")
    slug = clean_slug(slug or name)
    if slug in RESERVED_SLUGS:
        raise ActionError(f"“{slug}” is reserved; choose another slug.", field="slug", code="duplicate")
    if Organization.objects.filter(slug=slug).exists():
        raise ActionError(
            f"The address “{slug}” is already taken by another organisation; choose another slug.",
            field="slug",
            code="duplicate",
        )
    try:
        with transaction.atomic():
            org = Organization.objects.create(name=name, slug=slug, created_by=user)
    except IntegrityError:
        raise ActionError(f"The address “{slug}” was just taken; choose another slug.", field="slug", code="duplicate")
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    return org


@transaction.atomic
def do_rename_organization(org: Organization, name: str) -> Organization:
    name = name.strip()
    if not name:
        raise ActionError("The organisation needs a name.", field="name")
    org.name = name
    org.save(update_fields=["name"])
    return org


def do_delete_organization(org: Organization, *, confirm_slug: str) -> None:
    """Delete an organisation and everything in it (owners only; checked by the caller's role)."""
    if confirm_slug != org.slug:
        raise ActionError(f"Type the organisation's slug “{org.slug}” to confirm.", field="confirm")
    org.delete()


# --- Members and invitations ------------------------------------------------------------


def _check_can_assign(actor: Membership, role: str) -> None:
    if role not in Role.values:
        raise ActionError(f"Unknown role “{role}”; choose one of {', '.join(Role.values)}.", field="role")
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise ActionError("Only an owner can make someone an owner.", field="role", code="forbidden")


def _owners_left(org: Organization, excluding: Membership) -> int:
    return Membership.objects.for_org(org).filter(role=Role.OWNER).exclude(pk=excluding.pk).count()


@transaction.atomic
def do_change_role(actor: Membership, member: Membership, role: str) -> Membership:
    _check_can_assign(actor, role)
    if member.role == Role.OWNER and actor.role != Role.OWNER:
        raise ActionError("Only an owner can change another owner's role.", code="forbidden")
    if member.role == Role.OWNER and role != Role.OWNER and _owners_left(member.organization, member) == 0:
        raise ActionError("An organisation needs at least one owner: make someone else owner first.")
    member.role = role
    member.save(update_fields=["role"])
    return member


@transaction.atomic
def do_remove_member(actor: Membership, member: Membership) -> None:
    """Remove a member (or leave, when actor is member); their API tokens stop working."""
    if member.pk != actor.pk and member.role == Role.OWNER and actor.role != Role.OWNER:
        raise ActionError("Only an owner can remove an owner.", code="forbidden")
    if member.role == Role.OWNER and _owners_left(member.organization, member) == 0:
        raise ActionError("An organisation needs at least one owner: make someone else owner first.")
    ApiToken.objects.for_org(member.organization).filter(user=member.user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    member.delete()


def do_create_invitation(actor: Membership, role: str, email: str = "") -> tuple[Invitation, str]:
    """Create an invitation; returns it and the secret key (shown once, only its hash is kept)."""
    _check_can_assign(actor, role)
    key = Invitation.new_key()
    invitation = Invitation.objects.create(
        organization=actor.organization,
        role=role,
        email=email.strip(),
        key_hash=hash_secret(key),
        created_by=actor.user,
        expires_at=Invitation.default_expiry(),
    )
    return invitation, key


def do_revoke_invitation(invitation: Invitation) -> None:
    if invitation.state != "pending":
        raise ActionError(f"This invitation is already {invitation.state}.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])


def find_invitation(org_slug: str, key: str) -> Invitation:
    """The pending invitation for this link, or an ActionError saying what is wrong with it."""
    invitation = Invitation.objects.select_related("organization").filter(key_hash=hash_secret(key)).first()
    if invitation is None:
        raise ActionError("This invitation link is not valid. Ask for a new one.", code="not_found")
    if invitation.organization.slug != org_slug:
        raise ActionError("This invitation belongs to another organisation than the link says.", code="not_found")
    if invitation.state != "pending":
        reason = {
            "accepted": "has already been used",
            "revoked": "was revoked",
            "expired": "has expired",
        }[invitation.state]
        raise ActionError(f"This invitation {reason}. Ask an admin of {invitation.organization} for a new one.")
    return invitation


@transaction.atomic
def do_accept_invitation(user, org_slug: str, key: str) -> Membership:
    invitation = find_invitation(org_slug, key)
    # Lock the row so two people cannot both use the same link.
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.state != "pending":
        raise ActionError("This invitation has already been used.")
    if Membership.objects.for_org(invitation.organization).filter(user=user).exists():
        raise ActionError(f"You are already a member of {invitation.organization}.")
    membership = Membership.objects.create(organization=invitation.organization, user=user, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


# --- Projects ----------------------------------------------------------------------------


@transaction.atomic
def do_create_project(org: Organization, user, name: str, slug: str = "", description: str = "") -> Project:
    name = name.strip()
    if not name:
        raise ActionError("The project needs a name.", field="name")
    slug = clean_slug(slug or name)
    if Project.objects.for_org(org).filter(slug=slug).exists():
        raise ActionError(
            f"A project with the address “{slug}” already exists in {org}; choose another name or slug.",
            field="slug",
            code="duplicate",
        )
    return Project.objects.create(organization=org, name=name, slug=slug, description=description, created_by=user)


def do_update_project(project: Project, *, name: str | None = None, description: str | None = None) -> Project:
    if name is not None:
        if not name.strip():
            raise ActionError("The project needs a name.", field="name")
        project.name = name.strip()
    if description is not None:
        project.description = description
    project.save(update_fields=["name", "description"])
    return project


def do_archive_project(project: Project, archived: bool = True) -> Project:
    project.archived_at = timezone.now() if archived else None
    project.save(update_fields=["archived_at"])
    return project


# --- API tokens --------------------------------------------------------------------------


def do_create_token(org: Organization, user, name: str) -> tuple[ApiToken, str]:
    """Create a personal token; returns the row and the token itself (shown once)."""
    name = name.strip()
    if not name:
        raise ActionError("Give the token a name, e.g. the script that will use it.", field="name")
    secret = ApiToken.generate()
    token = ApiToken.objects.create(
        organization=org,
        user=user,
        name=name[:80],
        prefix=secret[: len(ApiToken.PREFIX) + 6],
        token_hash=hash_secret(secret),
    )
    return token, secret


def do_revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


# --- Jobs --------------------------------------------------------------------------------


def do_enqueue_job(
    org: Organization,
    kind: str,
    *,
    user=None,
    project: Project | None = None,
    params: dict[str, Any] | None = None,
    retry_of: Job | None = None,
    enqueue: bool = True,
) -> Job:
    """Create a job row and enqueue it once the surrounding transaction commits.

    ``enqueue=False`` leaves it queued for the caller to run in its own process
    (`jobs_base.execute`), as command-line imports do.
    """
    kind_cls = registry.get(kind)
    if kind_cls is None:
        raise ActionError(f"Unknown job kind “{kind}”; known kinds: {', '.join(sorted(registry))}.", field="kind")
    if project is not None and project.organization_id != org.pk:
        raise ActionError("That project does not exist.", field="project", code="not_found")
    if kind_cls.needs_project and project is None:
        raise ActionError(f"{kind_cls.title} needs a project.", field="project")
    if project is not None and project.is_archived:
        raise ActionError(f"Project {project} is archived; unarchive it to run jobs.", field="project")
    try:
        params = kind_cls.clean_params(dict(params or {}))
    except ValueError as exc:
        raise ActionError(str(exc), field="params")
    job = Job.objects.create(
        organization=org,
        project=project,
        kind=kind,
        queue=kind_cls.queue,
        params=params,
        created_by=user,
        retry_of=retry_of,
        message="Waiting for a worker",
    )
    if enqueue:
        transaction.on_commit(lambda: _enqueue(job))
    return job


def _enqueue(job: Job) -> None:
    import django_rq

    from projects.jobs_base import execute

    try:
        django_rq.get_queue(job.queue).enqueue(
            execute, job.pk, job_id=str(job.rq_id), failure_ttl=7 * 24 * 3600, result_ttl=3600
        )
    except Exception as exc:  # noqa: BLE001 - Redis down: say so on the job instead of losing it
        Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            finished_at=timezone.now(),
            message="Not queued",
            error=f"Could not reach the job queue ({type(exc).__name__}: {exc}). Check that Redis is running, then retry.",
        )
        job.refresh_from_db()
        notify_end_without_success(job)
    publish_job_event(job)


def do_cancel_job(job: Job) -> Job:
    """Cancel a queued or running job. A running worker is told to stop at once."""
    if not job.can_cancel:
        raise ActionError(f"This job has already {job.status}; there is nothing to cancel.", code="conflict")
    was_running = job.status == JobStatus.RUNNING
    updated = Job.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled"
    )
    job.refresh_from_db()
    if not updated:
        raise ActionError(f"This job has just {job.status}; there is nothing to cancel.", code="conflict")
    _stop_rq_job(job, was_running)
    publish_job_event(job)
    notify_end_without_success(job)
    return job


def _stop_rq_job(job: Job, running: bool) -> None:
    import django_rq
    from rq.command import send_stop_job_command
    from rq.exceptions import InvalidJobOperation, NoSuchJobError
    from rq.job import Job as RQJob

    connection = django_rq.get_connection(job.queue)
    try:
        if running:
            send_stop_job_command(connection, str(job.rq_id))
        else:
            RQJob.fetch(str(job.rq_id), connection=connection).cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass  # already gone from the queue; the row says cancelled and execute() skips it
    except Exception:  # noqa: BLE001 - Redis down: the row is cancelled; execute() will skip it
        import logging

        logging.getLogger("hartonomous.jobs").warning("could not signal RQ for job %s", job.pk, exc_info=True)


def do_retry_job(job: Job, user) -> Job:
    if not job.can_retry:
        raise ActionError(f"Only failed or cancelled jobs can be retried; this one is {job.status}.", code="conflict")
    return do_enqueue_job(job.organization, job.kind, user=user, project=job.project, params=job.params, retry_of=job)


# --- Uploads -------------------------------------------------------------------------------


def do_start_upload(
    project: Project, user, *, filename: str, size: int, relative_path: str = "", expected_sha256: str = ""
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


# --- Deleting rows that own blobs -----------------------------------------------------------


def do_delete_owning_blobs(obj, blob_shas: list[str]) -> None:
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
        )
    blobs.collect_garbage(only=[sha for sha in blob_shas if sha])
