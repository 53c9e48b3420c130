from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from projects.models import ApiToken, Invitation, Job, Membership, Organization, Project, Role, Upload


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email"]


class OrganizationSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    slug = serializers.SlugField(required=False, max_length=60)

    class Meta:
        model = Organization
        fields = ["slug", "name", "created_at", "role"]
        read_only_fields = ["created_at", "role"]

    def get_role(self, org) -> str | None:
        roles = self.context.get("roles") or {}
        return roles.get(org.pk)


class OrganizationUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["name"]


class ProjectSerializer(serializers.ModelSerializer):
    slug = serializers.SlugField(required=False, max_length=60)
    archived = serializers.BooleanField(source="is_archived", read_only=True)

    class Meta:
        model = Project
        fields = ["slug", "name", "description", "created_at", "archived", "archived_at", "stats", "stats_updated_at"]
        read_only_fields = ["created_at", "archived_at", "stats", "stats_updated_at"]


class ProjectUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["name", "description"]
        extra_kwargs = {"name": {"required": False}, "description": {"required": False}}


class MembershipSerializer(serializers.ModelSerializer):
    user = UserSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "created_at"]
        read_only_fields = ["id", "user", "created_at"]


class InvitationSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "role", "email", "state", "created_at", "expires_at", "accepted_at"]
        read_only_fields = ["id", "state", "created_at", "expires_at", "accepted_at"]


class InvitationCreatedSerializer(InvitationSerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once. Give it (or the url) to the person invited.")
    url = serializers.CharField(read_only=True)

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "key", "url"]


class AcceptInvitationSerializer(serializers.Serializer):
    org = serializers.SlugField(help_text="The organisation's slug, as in the invitation link.")
    key = serializers.CharField()


class ApiTokenSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at", "active"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at", "active"]


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; only its hash is stored.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


class JobSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    title = serializers.CharField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "title",
            "project",
            "queue",
            "status",
            "progress",
            "message",
            "error",
            "params",
            "result",
            "artifacts",
            "log",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "retry_of",
        ]
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="A job kind people may start, e.g. `projects.recount_stats`.")
    project = serializers.SlugField(help_text="The project's slug.")
    params = serializers.DictField(required=False, default=dict)


class RoleChoiceSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class UploadSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    offset = serializers.IntegerField(
        source="received", read_only=True, help_text="Bytes received so far: send the next chunk from here."
    )
    blob_sha256 = serializers.CharField(source="blob_id", read_only=True, allow_null=True)

    class Meta:
        model = Upload
        fields = [
            "id",
            "project",
            "filename",
            "relative_path",
            "size",
            "offset",
            "expected_sha256",
            "status",
            "blob_sha256",
            "created_at",
        ]
        read_only_fields = ["id", "project", "offset", "status", "blob_sha256", "created_at"]


class UploadCreateSerializer(serializers.Serializer):
    project = serializers.SlugField()
    filename = serializers.CharField(max_length=255)
    relative_path = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    size = serializers.IntegerField(min_value=1)
    expected_sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False, allow_blank=True, default="")
