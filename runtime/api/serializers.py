"""Serializers of the runtime's REST API (agents, endpoints, conversations, feedback, audit)."""

from __future__ import annotations

from urllib.parse import urlsplit

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from runtime.models import Agent, Backend, Conversation, Endpoint, Feedback, InferenceRecord, Message, Promotion

AGENT_STATUS = "undeployed, deploying, live or failed"


class AgentBriefSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text=AGENT_STATUS)

    class Meta:
        model = Agent
        fields = ["id", "slug", "name", "status"]
        read_only_fields = fields


class EndpointBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Endpoint
        fields = ["id", "slug", "name"]
        read_only_fields = fields


AGENT_SETTINGS = [
    "system_prompt",
    "temperature",
    "top_p",
    "max_tokens",
    "context_length",
    "gpu_layers",
    "use_mmap",
    "threads",
]


class AgentSerializer(serializers.ModelSerializer):
    """An agent as the API shows it: ``remote_api_key`` is never shown, ``has_remote_api_key`` says if one is set."""

    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model = serializers.PrimaryKeyRelatedField(read_only=True, help_text="The GGUF model (llama.cpp backend).")
    has_remote_api_key = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    # Plain strings, as other APIs' statuses (one "status" enum per model would collide in the schema).
    status = serializers.CharField(read_only=True, help_text=AGENT_STATUS)

    class Meta:
        model = Agent
        fields = [
            "id",
            "slug",
            "name",
            "project",
            "backend",
            "model",
            "remote_url",
            "remote_model",
            "has_remote_api_key",
            *AGENT_SETTINGS,
            "status",
            "error",
            "deployment",
            "deployed_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_remote_api_key(self, agent) -> bool:
        return bool(agent.remote_api_key)


class RemoteURLField(serializers.CharField):
    """An http(s) URL whose host may be a bare name (``http://gpu-host:8080/v1``, a compose service):
    Django's URL validator wants a dotted domain."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise serializers.ValidationError(
                    "Enter the base URL of an OpenAI-compatible API, e.g. http://gpu-host:8080/v1."
                )
        return value


class AgentUpdateSerializer(serializers.ModelSerializer):
    """What can change on an agent (its slug — the OpenAI API's ``model`` — and project stay)."""

    remote_url = RemoteURLField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Base URL of an OpenAI-compatible API (remote backend), e.g. http://gpu-host:8080/v1.",
    )
    model = serializers.IntegerField(
        required=False, allow_null=True, help_text="Id of a ready GGUF model of this organisation."
    )
    remote_api_key = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        max_length=500,
        trim_whitespace=True,
        help_text="Sent as the bearer token to the remote endpoint; never shown back. Blank keeps the current key.",
    )

    class Meta:
        model = Agent
        fields = ["name", "backend", "model", "remote_url", "remote_model", "remote_api_key", *AGENT_SETTINGS]
        extra_kwargs = {"name": {"required": False}}


class AgentCreateSerializer(AgentUpdateSerializer):
    project = serializers.SlugField(help_text="Slug of a project of this organisation.")
    slug = serializers.SlugField(
        required=False,
        allow_blank=True,
        max_length=120,
        help_text="The name clients use as `model` (OpenAI API); defaults to the name, slugified.",
    )

    class Meta(AgentUpdateSerializer.Meta):
        fields = ["project", "slug", *AgentUpdateSerializer.Meta.fields]
        extra_kwargs = {"name": {"required": True}, "backend": {"default": Backend.LLAMA_CPP}}


class PromotionSerializer(serializers.ModelSerializer):
    baseline = AgentBriefSerializer(read_only=True)
    candidate = AgentBriefSerializer(read_only=True)
    by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Promotion
        fields = ["id", "action", "baseline", "candidate", "candidate_share", "results", "note", "by", "at"]
        read_only_fields = fields


class EndpointSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    baseline = AgentBriefSerializer(read_only=True)
    candidate = AgentBriefSerializer(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    status = serializers.CharField(read_only=True, help_text="running or stopped")

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "slug",
            "name",
            "project",
            "baseline",
            "candidate",
            "candidate_share",
            "status",
            "testing",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class EndpointDetailSerializer(EndpointSerializer):
    ab_results = serializers.SerializerMethodField(
        help_text="Per variant: conversations, answers, thumbs up/down "
        "with the up-rate's 95 % interval, latency percentiles."
    )
    history = PromotionSerializer(many=True, read_only=True)

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "ab_results", "history"]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField())
    def get_ab_results(self, endpoint) -> dict:
        from runtime.queries import ab_results

        return ab_results(endpoint)


class EndpointCreateSerializer(serializers.Serializer):
    project = serializers.SlugField()
    name = serializers.CharField(max_length=120)
    slug = serializers.SlugField(required=False, allow_blank=True, max_length=120, default="")
    baseline = serializers.IntegerField(help_text="Id of the agent answering by default.")
    candidate = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="Id of the agent under test (optional)."
    )
    candidate_share = serializers.FloatField(
        min_value=0, max_value=1, default=0.5, help_text="Share of new conversations sent to the candidate."
    )


class ChangeTestSerializer(serializers.Serializer):
    candidate = serializers.IntegerField(allow_null=True, help_text="Id of the agent under test; null ends the test.")
    candidate_share = serializers.FloatField(min_value=0, max_value=1)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class FeedbackSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Feedback
        fields = ["message", "user", "rating", "comment", "created_at"]
        read_only_fields = fields


class FeedbackCreateSerializer(serializers.Serializer):
    message = serializers.IntegerField(help_text="Id of an answer (assistant message) of this conversation.")
    rating = serializers.ChoiceField(choices=[1, -1], help_text="1: thumbs up, -1: thumbs down.")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class MessageSerializer(serializers.ModelSerializer):
    feedback = FeedbackSerializer(many=True, read_only=True)
    status = serializers.CharField(read_only=True, help_text="streaming, complete, stopped, interrupted or failed")

    class Meta:
        model = Message
        fields = [
            "id",
            "role",
            "content",
            "status",
            "error",
            "superseded",
            "prompt_tokens",
            "completion_tokens",
            "ttft_ms",
            "duration_ms",
            "dropped_messages",
            "created_at",
            "updated_at",
            "feedback",
        ]
        read_only_fields = fields


class ConversationSerializer(serializers.ModelSerializer):
    """A conversation names what the person talked to: an agent, or an endpoint — blind, as the chat
    pages: which agent (variant) answers an endpoint's conversation is not shown (``agent`` is null)."""

    agent = AgentBriefSerializer(read_only=True, allow_null=True)
    endpoint = EndpointBriefSerializer(read_only=True)
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "agent", "endpoint", "user", "created_at", "updated_at"]
        read_only_fields = fields

    def to_representation(self, conversation):
        data = super().to_representation(conversation)
        if conversation.endpoint_id is not None:
            data["agent"] = None
        return data


class ConversationDetailSerializer(ConversationSerializer):
    messages = MessageSerializer(many=True, read_only=True)

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]
        read_only_fields = fields


class TokenBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()


class InferenceRecordSerializer(serializers.ModelSerializer):
    agent = AgentBriefSerializer(read_only=True)
    endpoint = EndpointBriefSerializer(read_only=True)
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    token = TokenBriefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = InferenceRecord
        fields = [
            "id",
            "created_at",
            "source",
            "outcome",
            "error",
            "agent",
            "model",
            "endpoint",
            "variant",
            "conversation",
            "message",
            "user",
            "token",
            "prompt_tokens",
            "completion_tokens",
            "ttft_ms",
            "latency_ms",
        ]
        read_only_fields = fields


class AuditSummarySerializer(serializers.Serializer):
    count = serializers.IntegerField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    by_outcome = serializers.DictField(child=serializers.IntegerField())
    by_source = serializers.DictField(child=serializers.IntegerField())
    ttft_ms = serializers.DictField(help_text="p50, p95, p99 (null without data).")
    latency_ms = serializers.DictField(help_text="p50, p95, p99 (null without data).")
