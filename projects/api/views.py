"""REST API of the projects app (mounted at /api/v1/)."""

from __future__ import annotations

import re

from django.conf import settings as django_settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from projects import actions, blobs
from projects.api import serializers as s
from projects.api.base import CachedListMixin, OrgScopedViewSet
from projects.background import reap_stale_jobs, registry
from projects.models import ApiToken, Invitation, Job, Membership, Organization, Project, Role, Upload, UploadStatus


class MeView(APIView):
    """Who the request is authenticated as, and their organisations."""

    @extend_schema(responses=s.UserSerializer)
    def get(self, request):
        memberships = (
            Membership.objects.select_related("organization")
            .filter(organization__in=self._orgs(request))
            .filter(user=request.user)
        )
        return Response(
            {
                **s.UserSerializer(request.user).data,
                "organizations": [
                    {"slug": m.organization.slug, "name": m.organization.name, "role": m.role} for m in memberships
                ],
                "token_organization": request.auth.organization.slug if isinstance(request.auth, ApiToken) else None,
            }
        )

    @staticmethod
    def _orgs(request):
        orgs = Organization.objects.for_user(request.user)
        if isinstance(request.auth, ApiToken):  # a token sees only its own organisation
            orgs = orgs.filter(pk=request.auth.organization_id)
        return orgs


class OrganizationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Organisations you belong to. Creating one makes you its owner; only owners delete."""

    model = Organization
    serializer_class = s.OrganizationSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "org_slug"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def initial(self, request, *args, **kwargs):
        if "org_slug" in kwargs:
            return super().initial(request, *args, **kwargs)
        # The collection is not inside one organisation: no org to resolve.
        self.perform_authentication(request)
        viewsets.GenericViewSet.initial(self, request, *args, **kwargs)

    def get_permissions(self):
        if "org_slug" not in self.kwargs:
            return [permissions.IsAuthenticated()]
        return super().get_permissions()

    def get_write_role(self) -> str:
        return Role.OWNER if self.request.method == "DELETE" else Role.ADMIN

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Organization.objects.none()
        return MeView._orgs(self.request)

    def get_serializer_class(self):
        return s.OrganizationUpdateSerializer if self.action == "partial_update" else s.OrganizationSerializer

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if getattr(self, "swagger_fake_view", False) or not self.request.user.is_authenticated:
            return context
        context["roles"] = dict(
            Membership.objects.for_user(self.request.user)
            .filter(user=self.request.user)
            .values_list("organization_id", "role")
        )
        return context

    def perform_create(self, serializer):
        if isinstance(self.request.auth, ApiToken):
            raise actions.ActionError(
                "API tokens belong to one organisation and cannot create others; sign in to create an organisation.",
                code="forbidden",
            )
        org = actions.do_create_organization(
            self.request.user, serializer.validated_data["name"], serializer.validated_data.get("slug", "")
        )
        serializer.instance = org

    def perform_update(self, serializer):
        actions.do_rename_organization(self.org, serializer.validated_data.get("name", self.org.name))

    def perform_destroy(self, instance):
        actions.do_delete_organization(self.org, confirm_slug=self.org.slug)


class ProjectViewSet(
    CachedListMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    OrgScopedViewSet,
):
    """Projects of the organisation. Archive instead of delete; `?archived=1` lists archived ones."""

    model = Project
    serializer_class = s.ProjectSerializer
    lookup_field = "slug"
    lookup_url_kwarg = "project_slug"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list":
            archived = self.request.query_params.get("archived") == "1"
            queryset = queryset.exclude(archived_at=None) if archived else queryset.active()
        return queryset

    def get_serializer_class(self):
        return s.ProjectUpdateSerializer if self.action == "partial_update" else s.ProjectSerializer

    def perform_create(self, serializer):
        serializer.instance = actions.do_create_project(self.org, self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        actions.do_update_project(self.get_object(), **serializer.validated_data)

    @extend_schema(request=None, responses=s.ProjectSerializer)
    @action(detail=True, methods=["post"])
    def archive(self, request, **kwargs):
        return Response(s.ProjectSerializer(actions.do_archive_project(self.get_object(), True)).data)

    @extend_schema(request=None, responses=s.ProjectSerializer)
    @action(detail=True, methods=["post"])
    def unarchive(self, request, **kwargs):
        return Response(s.ProjectSerializer(actions.do_archive_project(self.get_object(), False)).data)


class MemberViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Members and their roles. Admins change roles and remove members (their tokens stop working)."""

    model = Membership
    serializer_class = s.MembershipSerializer
    write_role = Role.ADMIN
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return super().get_queryset().select_related("user")

    @extend_schema(request=s.RoleChoiceSerializer)
    def partial_update(self, request, *args, **kwargs):
        member = self.get_object()
        data = s.RoleChoiceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actions.do_change_role(self.membership, member, data.validated_data["role"])
        return Response(s.MembershipSerializer(member).data)

    def perform_destroy(self, instance):
        actions.do_remove_member(self.membership, instance)


class InvitationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Invitation links (admins). The key is shown once, at creation; DELETE revokes."""

    model = Invitation
    serializer_class = s.InvitationSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    @extend_schema(responses={201: s.InvitationCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = s.InvitationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, key = actions.do_create_invitation(
            self.membership,
            serializer.validated_data.get("role", Role.MEMBER),
            serializer.validated_data.get("email", ""),
        )
        invitation.key = key
        invitation.url = request.build_absolute_uri(reverse("join", kwargs={"org_slug": self.org.slug, "key": key}))
        return Response(s.InvitationCreatedSerializer(invitation).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        actions.do_revoke_invitation(instance)


class AcceptInvitationView(APIView):
    """Join an organisation with an invitation key (signed-in users; tokens cannot join)."""

    @extend_schema(request=s.AcceptInvitationSerializer, responses={201: s.MembershipSerializer})
    def post(self, request):
        if isinstance(request.auth, ApiToken):
            raise actions.ActionError("Accept invitations while signed in, not with an API token.", code="forbidden")
        data = s.AcceptInvitationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = actions.do_accept_invitation(request.user, data.validated_data["org"], data.validated_data["key"])
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Your personal API tokens in this organisation. The token is shown once; DELETE revokes."""

    model = ApiToken
    serializer_class = s.ApiTokenSerializer
    write_role = Role.VIEWER

    def get_queryset(self):
        return super().get_queryset().filter(user=self.request.user)

    @extend_schema(responses={201: s.ApiTokenCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = s.ApiTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, secret = actions.do_create_token(self.org, request.user, serializer.validated_data["name"])
        token.token = secret
        return Response(s.ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        actions.do_revoke_token(instance)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Background jobs. Filter with `?status=`, `?project=<slug>`, `?kind=`."""

    model = Job
    serializer_class = s.JobSerializer

    filter_params = {"status": "status", "project": "project__slug", "kind": "kind"}

    def get_queryset(self):
        reap_stale_jobs()
        return super().get_queryset().select_related("project")

    @extend_schema(request=s.JobCreateSerializer, responses={201: s.JobSerializer})
    def create(self, request, *args, **kwargs):
        data = s.JobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        kind = registry.get(data.validated_data["kind"])
        if kind is None or not kind.user_startable:
            startable = sorted(name for name, k in registry.items() if k.user_startable)
            raise actions.ActionError(
                f"“{data.validated_data['kind']}” cannot be started here; choose one of: {', '.join(startable)}.",
                field="kind",
            )
        project = Project.objects.for_org(self.org).filter(slug=data.validated_data["project"]).first()
        if project is None:
            raise actions.ActionError(
                f"No project “{data.validated_data['project']}” in this organisation.",
                field="project",
                code="not_found",
            )
        job = actions.do_enqueue_job(
            self.org, kind.name, user=request.user, project=project, params=data.validated_data["params"]
        )
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, **kwargs):
        return Response(s.JobSerializer(actions.do_cancel_job(self.get_object())).data)

    @extend_schema(request=None, responses={201: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, **kwargs):
        job = actions.do_retry_job(self.get_object(), request.user)
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)


class RawBodyParser(BaseParser):
    """Hands the request body to the view as a stream (chunks are never read whole)."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream


CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


class UploadViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet):
    """Resumable, chunked uploads.

    1. `POST` `{project, filename, size[, expected_sha256]}` opens an upload.
    2. `PUT` the bytes in chunks with `Content-Type: application/octet-stream` and
       `Content-Range: bytes START-END/SIZE` (optionally `X-Chunk-SHA256`); each answer
       gives the next `offset`. After a dropped connection, `GET` tells where to resume.
    3. `POST .../complete/` checks the size and SHA-256 and stores the file as a blob.
    `DELETE` aborts and discards what arrived.
    """

    model = Upload
    serializer_class = s.UploadSerializer
    parser_classes = [JSONParser, RawBodyParser]

    def get_queryset(self):
        return super().get_queryset().select_related("project")

    @extend_schema(request=s.UploadCreateSerializer, responses={201: s.UploadSerializer})
    def create(self, request, *args, **kwargs):
        data = s.UploadCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = Project.objects.for_org(self.org).filter(slug=data.validated_data.pop("project")).first()
        if project is None:
            raise actions.ActionError("No such project in this organisation.", field="project", code="not_found")
        upload = actions.do_start_upload(project, request.user, **data.validated_data)
        return Response(s.UploadSerializer(upload).data, status=status.HTTP_201_CREATED)

    @extend_schema(request={"application/octet-stream": bytes}, responses=s.UploadSerializer)
    def update(self, request, *args, **kwargs):
        upload = self.get_object()
        match = CONTENT_RANGE.match(request.headers.get("Content-Range", ""))
        if not match:
            raise actions.ActionError(
                "Send each chunk with `Content-Range: bytes START-END/SIZE`.", field="Content-Range"
            )
        start, end, total = (int(g) for g in match.groups())
        length = end - start + 1
        if total != upload.size or end < start:
            raise actions.ActionError(
                f"The Content-Range does not fit this upload of {upload.size} bytes.", field="Content-Range"
            )
        if length > django_settings.UPLOAD_MAX_CHUNK_BYTES:
            raise actions.ActionError(
                f"Chunks may be at most {django_settings.UPLOAD_MAX_CHUNK_BYTES} bytes.", field="Content-Range"
            )
        if int(request.headers.get("Content-Length") or 0) != length:
            raise actions.ActionError(
                "Content-Length must equal the length given by Content-Range.", field="Content-Length"
            )
        try:
            # The raw body as the server streams it (hartonomous_web/streamed_body.py), read into the
            # upload's own buffers; Django's request stream otherwise (the test client, other servers).
            body = getattr(request, "streamed_body", None) or request.stream
            blobs.receive_chunk(upload, start, body, length, request.headers.get("X-Chunk-SHA256"))
        except blobs.ChunkOffsetError as exc:
            return Response(
                {
                    "error": {
                        "status": 409,
                        "code": "offset_mismatch",
                        "message": str(exc),
                        "fields": {},
                        "offset": exc.expected,
                    }
                },
                status=status.HTTP_409_CONFLICT,
            )
        except blobs.BlobError as exc:
            raise actions.ActionError(str(exc), code="conflict") from exc
        return Response(s.UploadSerializer(upload).data)

    @extend_schema(request=None, responses=s.UploadSerializer)
    @action(detail=True, methods=["post"])
    def complete(self, request, **kwargs):
        upload = self.get_object()
        try:
            blobs.complete_upload(upload)
        except blobs.BlobError as exc:
            raise actions.ActionError(str(exc), code="conflict") from exc
        return Response(s.UploadSerializer(upload).data)

    def perform_destroy(self, instance):
        if instance.status == UploadStatus.RECEIVING:
            try:
                blobs.abort_upload(instance)
            except blobs.BlobError as exc:
                raise actions.ActionError(str(exc), code="conflict") from exc
