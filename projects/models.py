"""Tenants, projects, API tokens and background jobs: the state every other app builds on."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.text import slugify

from projects.tenancy import TenantModel, TenantQuerySet
from projects.tenant_cache import TrackedWritesQuerySet


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy secret (tokens, invitation keys); only the hash is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Role(models.TextChoices):
    """Roles in an organisation, weakest first; each includes the rights of those before it."""

    VIEWER = "viewer", "Viewer"
    MEMBER = "member", "Member"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"

    @classmethod
    def rank(cls, role: str) -> int:
        return [choice.value for choice in cls].index(role)

    @classmethod
    def at_least(cls, role: str, needed: str) -> bool:
        return cls.rank(role) >= cls.rank(needed)


class OrganizationQuerySet(TrackedWritesQuerySet):
    def for_user(self, user) -> OrganizationQuerySet:
        if not user or not user.is_authenticated:
            return self.none()
        return self.filter(memberships__user=user)

    def for_org(self, org: Organization) -> OrganizationQuerySet:
        return self.filter(pk=org.pk)


class Organization(models.Model):
    """The tenant. Everything a team owns hangs off one organisation."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(TenantModel):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="uniq_membership")]
        ordering = ["organization", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    def has_role(self, needed: str) -> bool:
        return Role.at_least(self.role, needed)


class InvitationQuerySet(TenantQuerySet):
    def pending(self) -> InvitationQuerySet:
        return self.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())


class Invitation(TenantModel):
    """A link that lets whoever holds it join an organisation with a role, once."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    email = models.EmailField(blank=True, help_text="Who it is meant for (informational).")
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = models.Manager.from_queryset(InvitationQuerySet)()

    class Meta:
        ordering = ["-created_at"]

    @staticmethod
    def new_key() -> str:
        return secrets.token_urlsafe(24)

    @classmethod
    def default_expiry(cls):
        return timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS)

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class ProjectQuerySet(TenantQuerySet):
    def active(self) -> ProjectQuerySet:
        return self.filter(archived_at__isnull=True)


class Project(TenantModel):
    """A unit of work inside an organisation: its models, datasets, analyses, students, agents."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)
    #: Figures recomputed by the "recount statistics" job.
    stats = models.JSONField(default=dict, blank=True)
    stats_updated_at = models.DateTimeField(null=True, blank=True)

    objects = models.Manager.from_queryset(ProjectQuerySet)()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="uniq_project_slug")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @staticmethod
    def slug_for(name: str) -> str:
        return slugify(name)[:60]


class ApiTokenQuerySet(TenantQuerySet):
    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(TenantModel):
    """A personal API token: one user acting in one organisation. Only its hash is stored."""

    PREFIX = "hart_"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    #: The first characters of the token, shown so people can tell their tokens apart.
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = models.Manager.from_queryset(ApiTokenQuerySet)()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def generate(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(TenantModel):
    """One piece of background work and everything a person needs to follow it.

    State changes go through conditional updates in ``projects.jobs_base`` and
    ``projects.actions`` so that a cancelled or reaped job is never overwritten by a
    worker that is still finishing.
    """

    FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
    LOG_TAIL_CHARS = 20_000

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="jobs")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=80)
    queue = models.CharField(max_length=20, default="default")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0, validators=[MinValueValidator(0), MaxValueValidator(1)])
    message = models.CharField(max_length=300, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    #: Links to what the job produced: [{"label": ..., "url": ...}].
    artifacts = models.JSONField(default=list, blank=True)
    rq_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    worker = models.CharField(max_length=120, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="job_org_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"{self.title} #{self.pk}"

    @property
    def title(self) -> str:
        from projects.jobs_base import registry

        kind = registry.get(self.kind)
        return kind.title if kind else self.kind

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def can_cancel(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def can_retry(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def duration(self) -> timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def as_event(self) -> dict:
        """What the browser receives when this job changes (see static/js/live.js)."""
        return {
            "id": self.pk,
            "project": self.project.slug if self.project_id else None,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "status_label": self.get_status_display(),
            "progress": round(self.progress, 4),
            "percent": int(self.progress * 100),
            "message": self.message,
            "error": self.error,
            "finished": self.is_finished,
            "can_cancel": self.can_cancel,
            "can_retry": self.can_retry,
        }


class Blob(models.Model):
    """A file stored once, named by the SHA-256 of its bytes (content addressing).

    Blobs are shared: two uploads of the same bytes, in any organisation, are one blob.
    Nobody reaches a blob directly; tenants reach it through their own rows that
    reference it (models, datasets, artifacts), so scoping stays with those rows.
    """

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    #: Name in Django's default storage (blobs/ab/cd/<sha256>).
    storage_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.sha256[:12]}… ({self.size} bytes)"

    @staticmethod
    def name_for(sha256: str) -> str:
        return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class ModelFormat(models.TextChoices):
    GGUF = "gguf", "GGUF"
    SAFETENSORS = "safetensors", "Safetensors (Hugging Face)"


class ModelStatus(models.TextChoices):
    IMPORTING = "importing", "Importing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ModelRole(models.TextChoices):
    TEACHER = "teacher", "Teacher"
    STUDENT = "student", "Student"


class LanguageModel(TenantModel):
    """A model in a project: its files (blobs), what its headers say, and its tensors as rows.

    Teachers are uploaded or imported; students are built by distillation; a conversion of
    either (GGUF <-> Hugging Face) records what it was ``derived_from``.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="language_models")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="language_models")
    name = models.CharField(max_length=200)
    role = models.CharField(max_length=10, choices=ModelRole.choices, default=ModelRole.TEACHER)
    format = models.CharField(max_length=12, choices=ModelFormat.choices)
    status = models.CharField(max_length=10, choices=ModelStatus.choices, default=ModelStatus.IMPORTING)
    error = models.TextField(blank=True)
    #: The model this one was converted from (GGUF -> HF checkpoint, or back).
    derived_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="derivatives"
    )
    architecture = models.CharField(max_length=60, blank=True)
    parameter_count = models.BigIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    file_type = models.CharField(max_length=40, blank=True)
    #: Header facts (block count, embedding length, heads, context, vocabulary, chat template, ...).
    metadata = models.JSONField(default=dict, blank=True)
    #: {"chat": bool, "analysis": bool, "distillation": bool, "reasons": {...}}
    capabilities = models.JSONField(default=dict, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def can(self, phase: str) -> bool:
        return bool(self.capabilities.get(phase))


class ModelFile(TenantModel):
    """One file of a model, as it is laid out in the model's folder."""

    tenant_field = "model__organization"

    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="files")
    #: Path inside the model's folder (e.g. "model-00001-of-00002.safetensors").
    path = models.CharField(max_length=500)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="model_files")

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["model", "path"], name="uniq_model_file_path")]

    def __str__(self) -> str:
        return self.path


class TensorRecord(TenantModel):
    """One tensor of a model ("atomization"): where its bytes are and what they are."""

    tenant_field = "model__organization"

    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="tensors")
    file = models.ForeignKey(ModelFile, on_delete=models.CASCADE, related_name="tensors")
    name = models.CharField(max_length=200)
    #: Transformer block index, or None for embeddings, final norm, output head.
    layer = models.IntegerField(null=True, blank=True)
    #: attn_q, attn_k, attn_v, attn_o, mlp_gate, mlp_up, mlp_down, norm, embedding, output_head, other
    component = models.CharField(max_length=20)
    #: PyTorch order (GGUF lists dimensions the other way round).
    shape = models.JSONField(default=list)
    dtype = models.CharField(max_length=20)
    n_params = models.BigIntegerField()
    offset = models.BigIntegerField()
    n_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)

    class Meta:
        ordering = ["model", "offset"]
        indexes = [models.Index(fields=["model", "layer", "component"], name="tensor_model_layer_comp")]

    def __str__(self) -> str:
        return self.name


class UploadStatus(models.TextChoices):
    RECEIVING = "receiving", "Receiving"
    COMPLETE = "complete", "Complete"
    ABORTED = "aborted", "Aborted"


class Upload(TenantModel):
    """A resumable, chunked upload into a project; becomes a Blob when complete.

    Chunks are appended to a part file under ``DATA_DIR/uploads``; ``received`` is the
    length of what is on disk, so a dropped connection resumes from there.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="uploads")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="uploads")
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    filename = models.CharField(max_length=255)
    #: Relative path inside a folder upload (e.g. "shards/model-00001-of-00002.safetensors").
    relative_path = models.CharField(max_length=500, blank=True)
    size = models.BigIntegerField()
    received = models.BigIntegerField(default=0)
    #: SHA-256 the client says the whole file has (optional); checked on completion.
    expected_sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=UploadStatus.choices, default=UploadStatus.RECEIVING)
    blob = models.ForeignKey(Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="uploads")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.received}/{self.size})"


from projects.models_datasets import *  # noqa: E402,F401,F403
