"""Agents, A/B endpoints, conversations, feedback and the inference audit.

An :class:`Agent` is a deployable GGUF model (or a remote OpenAI-compatible endpoint) plus its
generation settings. An :class:`Endpoint` routes conversations to a baseline or a candidate agent
(A/B test). Conversations keep every :class:`Message`; every inference leaves an
:class:`InferenceRecord`, the audit trail and the source of provenance later.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from projects.models import ApiToken, LanguageModel, Membership, Organization, Project
from projects.tenancy import TenantManager, TenantModel, TenantQuerySet

User = settings.AUTH_USER_MODEL


class Backend(models.TextChoices):
    LLAMA_CPP = "llama_cpp", "llama.cpp in this server"
    REMOTE = "remote", "Remote OpenAI-compatible endpoint"


class AgentStatus(models.TextChoices):
    UNDEPLOYED = "undeployed", "Not deployed"
    DEPLOYING = "deploying", "Deploying"
    LIVE = "live", "Live"
    FAILED = "failed", "Failed"


class Agent(TenantModel):
    """A model people can chat with, and how it answers."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agents")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=120)
    #: Unique in the organisation, shared with endpoints: the OpenAI API's ``model``.
    slug = models.SlugField(max_length=120)
    backend = models.CharField(max_length=12, choices=Backend.choices, default=Backend.LLAMA_CPP)
    #: The GGUF model (llama.cpp backend).
    model = models.ForeignKey(LanguageModel, null=True, blank=True, on_delete=models.PROTECT, related_name="agents")
    remote_url = models.URLField(
        blank=True, help_text="Base URL of an OpenAI-compatible API, e.g. http://gpu-host:8080/v1"
    )
    remote_model = models.CharField(max_length=200, blank=True)
    #: Sent as the bearer token to the remote endpoint; never shown back.
    remote_api_key = models.CharField(max_length=500, blank=True)
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(default=0.7, validators=[MinValueValidator(0), MaxValueValidator(2)])
    top_p = models.FloatField(default=0.95, validators=[MinValueValidator(0.01), MaxValueValidator(1)])
    max_tokens = models.PositiveIntegerField(default=512, validators=[MinValueValidator(1), MaxValueValidator(32768)])
    context_length = models.PositiveIntegerField(
        default=2048, validators=[MinValueValidator(64), MaxValueValidator(1_048_576)]
    )
    #: None: decide from the free GPU memory at load time (0 without a GPU); -1: every layer.
    gpu_layers = models.IntegerField(null=True, blank=True, validators=[MinValueValidator(-1)])
    use_mmap = models.BooleanField(default=True)
    #: None: every available core.
    threads = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(512)]
    )
    status = models.CharField(max_length=12, choices=AgentStatus.choices, default=AgentStatus.UNDEPLOYED)
    error = models.TextField(blank=True)
    #: What the last deployment found: load seconds, memory estimate, GPU layers used.
    deployment = models.JSONField(default=dict, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="uniq_agent_org_slug")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_live(self) -> bool:
        return self.status == AgentStatus.LIVE

    def as_event(self) -> dict:
        return {
            "id": self.pk,
            "slug": self.slug,
            "status": self.status,
            "status_label": self.get_status_display(),
            "error": self.error,
        }


class EndpointStatus(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Endpoint(TenantModel):
    """A stable name that routes each conversation to a baseline or a candidate agent (A/B test).

    The choice is sticky per conversation and blind to the user. Without a candidate, or once the
    test is stopped, everything goes to the baseline.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="endpoints")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="endpoints")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=120)
    baseline = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="baseline_of")
    candidate = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="candidate_of")
    #: Share of new conversations sent to the candidate, 0..1.
    candidate_share = models.FloatField(default=0.5, validators=[MinValueValidator(0), MaxValueValidator(1)])
    status = models.CharField(max_length=10, choices=EndpointStatus.choices, default=EndpointStatus.RUNNING)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="uniq_endpoint_org_slug")]

    def __str__(self) -> str:
        return self.name

    @property
    def testing(self) -> bool:
        return self.status == EndpointStatus.RUNNING and self.candidate_id is not None and self.candidate_share > 0


class PromotionAction(models.TextChoices):
    STARTED = "started", "Test started"
    CHANGED = "changed", "Test changed"
    PROMOTED = "promoted", "Candidate promoted"
    STOPPED = "stopped", "Test stopped"


class Promotion(TenantModel):
    """The history of an endpoint's tests: who started, changed, promoted or stopped what."""

    tenant_field = "endpoint__organization"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="history")
    action = models.CharField(max_length=10, choices=PromotionAction.choices)
    baseline = models.ForeignKey(Agent, null=True, on_delete=models.SET_NULL, related_name="+")
    candidate = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    candidate_share = models.FloatField(default=0)
    #: The results at the time (per variant counts, feedback rates, latency).
    results = models.JSONField(default=dict, blank=True)
    note = models.CharField(max_length=500, blank=True)
    by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]


class Variant(models.TextChoices):
    DIRECT = "", "Direct"
    BASELINE = "baseline", "Baseline"
    CANDIDATE = "candidate", "Candidate"


class ConversationQuerySet(TenantQuerySet):
    def visible_to(self, membership: Membership) -> ConversationQuerySet:
        """A member sees their own conversations; admins and owners see everyone's (to read)."""
        qs = self.for_org(membership.organization)
        return qs if membership.has_role("admin") else qs.filter(user=membership.user)


class Conversation(TenantModel):
    objects = TenantManager.from_queryset(ConversationQuerySet)()

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="conversations")
    #: The agent that answers (for an endpoint: the variant drawn when the conversation began).
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="conversations")
    endpoint = models.ForeignKey(
        Endpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    variant = models.CharField(max_length=10, choices=Variant.choices, blank=True, default="")
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["agent", "-updated_at"], name="conv_agent_recent")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class MessageStatus(models.TextChoices):
    STREAMING = "streaming", "Streaming"
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    INTERRUPTED = "interrupted", "Interrupted"
    FAILED = "failed", "Failed"


class Message(TenantModel):
    """One turn. A user's message is stored before generation starts; an answer as it streams."""

    tenant_field = "conversation__organization"
    MAX_CHARS = 32_000

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=[("user", "User"), ("assistant", "Assistant")])
    content = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=MessageStatus.choices, default=MessageStatus.COMPLETE)
    error = models.TextField(blank=True)
    #: An answer replaced by "regenerate" stays, hidden from the prompt.
    superseded = models.BooleanField(default=False)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    #: Older turns left out of the prompt because the context window was full.
    dropped_messages = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @property
    def tokens_per_second(self) -> float | None:
        if not self.completion_tokens or not self.duration_ms or self.ttft_ms is None:
            return None
        decode_ms = self.duration_ms - self.ttft_ms
        return round(self.completion_tokens / (decode_ms / 1000), 1) if decode_ms > 0 else None

    def as_event(self) -> dict:
        feedback = getattr(self, "my_feedback", None)
        return {
            "id": self.pk,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "status_label": self.get_status_display(),
            "error": self.error,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": self.ttft_ms,
            "duration_ms": self.duration_ms,
            "tokens_per_second": self.tokens_per_second,
            "dropped_messages": self.dropped_messages,
            "feedback": {"rating": feedback.rating, "comment": feedback.comment} if feedback else None,
        }


class Feedback(TenantModel):
    """A person's thumbs up (+1) or down (-1) on an answer, with an optional comment."""

    tenant_field = "message__conversation__organization"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    rating = models.SmallIntegerField(choices=[(1, "Thumbs up"), (-1, "Thumbs down")])
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="uniq_feedback_message_user")]


class Source(models.TextChoices):
    CHAT = "chat", "Chat (browser)"
    API = "api", "OpenAI-compatible API"


class Outcome(models.TextChoices):
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    INTERRUPTED = "interrupted", "Interrupted"
    FAILED = "failed", "Failed"


class InferenceRecord(TenantModel):
    """The audit row of one inference: who asked which agent and model, and how it went."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="inferences")
    agent = models.ForeignKey(Agent, null=True, on_delete=models.SET_NULL, related_name="inferences")
    #: Kept apart from the agent: the model may change when the agent is edited.
    model = models.ForeignKey(LanguageModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    endpoint = models.ForeignKey(Endpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="inferences")
    variant = models.CharField(max_length=10, choices=Variant.choices, blank=True, default="")
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=6, choices=Source.choices)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["agent", "-created_at"], name="inference_agent_recent")]
