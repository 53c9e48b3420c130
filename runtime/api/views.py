"""REST API of the runtime: /api/v1/orgs/<org>/{agents,endpoints,conversations,inferences}/.

Viewers read; members create, deploy, test, chat and give feedback (the write role of every
viewset). Conversations are private: a member sees their own, admins and owners everyone's.
Chatting itself is the OpenAI-compatible API (``runtime/api/openai.py``) or the websocket.
"""

from __future__ import annotations

from datetime import datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from projects.actions import ActionError
from projects.api.base import OrgScopedViewSet
from projects.models import LanguageModel, Project
from runtime import actions
from runtime.api import serializers as s
from runtime.models import Agent, Conversation, Endpoint, InferenceRecord, Message
from runtime.queries import audit_summary


class RuntimeViewSet(OrgScopedViewSet):
    """Looks up the objects a request body names, in the organisation only (others: 404)."""

    def scoped(self, model, pk, field: str, what: str):
        found = model.objects.for_org(self.org).filter(pk=pk).first() if pk is not None else None
        if found is None:
            raise ActionError(f"No such {what} in this organisation.", field=field, code="not_found")
        return found

    def project_named(self, slug: str) -> Project:
        project = Project.objects.for_org(self.org).filter(slug=slug).first()
        if project is None:
            raise ActionError("No such project in this organisation.", field="project", code="not_found")
        return project


class AgentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, RuntimeViewSet):
    """Agents: a GGUF model run by llama.cpp in this server, or a remote OpenAI-compatible endpoint, with its
    generation settings. Filter with `?project=<slug>`, `?status=`, `?backend=`.

    An agent answers once deployed (`POST …/deploy/`: the model loads in the background; the agent is
    `deploying`, then `live` or `failed` with the reason). Its `slug` is the `model` of the OpenAI-compatible
    API at `/v1/`. `remote_api_key` is write-only.
    """

    model = Agent
    serializer_class = s.AgentSerializer
    filter_params = {"project": "project__slug", "status": "status", "backend": "backend"}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return super().get_queryset().select_related("project", "model", "created_by")

    def _values(self, validated: dict) -> dict:
        values = dict(validated)
        if values.get("model") is not None:
            values["model"] = self.scoped(LanguageModel, values["model"], "model", "model")
        return values

    @extend_schema(request=s.AgentCreateSerializer, responses={201: s.AgentSerializer})
    def create(self, request, *args, **kwargs):
        data = s.AgentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = self._values(data.validated_data)
        project = self.project_named(values.pop("project"))
        agent = actions.do_create_agent(project, request.user, **values)
        return Response(s.AgentSerializer(agent).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.AgentUpdateSerializer, responses=s.AgentSerializer)
    def partial_update(self, request, *args, **kwargs):
        agent = self.get_object()
        data = s.AgentUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        agent = actions.do_update_agent(agent, **self._values(data.validated_data))
        return Response(s.AgentSerializer(agent).data)

    def perform_destroy(self, instance):
        actions.do_delete_agent(instance)

    @extend_schema(request=None, responses={202: s.AgentSerializer})
    @action(detail=True, methods=["post"])
    def deploy(self, request, **kwargs):
        """Load the agent's model in the background; poll the agent until `live` or `failed`."""
        agent = actions.do_deploy_agent(self.get_object())
        return Response(s.AgentSerializer(agent).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=s.AgentSerializer)
    @action(detail=True, methods=["post"])
    def undeploy(self, request, **kwargs):
        return Response(s.AgentSerializer(actions.do_undeploy_agent(self.get_object())).data)


class EndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, RuntimeViewSet):
    """Endpoints: a stable name (the OpenAI API's `model`) that routes each conversation to a baseline or a
    candidate agent — an A/B test, sticky per conversation. Filter with `?project=<slug>`, `?status=`.

    One endpoint shows its test's results (`ab_results`) and the history of starts, changes, promotions
    and stops.
    """

    model = Endpoint
    filter_params = {"project": "project__slug", "status": "status"}

    def get_serializer_class(self):
        return s.EndpointSerializer if self.action == "list" else s.EndpointDetailSerializer

    def get_queryset(self):
        queryset = super().get_queryset().select_related("project", "baseline", "candidate", "created_by")
        if self.action != "list":
            queryset = queryset.prefetch_related("history__baseline", "history__candidate", "history__by")
        return queryset

    def detail_of(self, endpoint: Endpoint) -> dict:
        return s.EndpointDetailSerializer(self.get_queryset().get(pk=endpoint.pk)).data

    def agent_by_id(self, pk, field: str):
        return self.scoped(Agent, pk, field, "agent") if pk is not None else None

    @extend_schema(request=s.EndpointCreateSerializer, responses={201: s.EndpointDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = s.EndpointCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        endpoint = actions.do_create_endpoint(
            self.project_named(values["project"]),
            request.user,
            name=values["name"],
            slug=values["slug"],
            baseline=self.agent_by_id(values["baseline"], "baseline"),
            candidate=self.agent_by_id(values["candidate"], "candidate"),
            candidate_share=values["candidate_share"],
        )
        return Response(self.detail_of(endpoint), status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        actions.do_delete_endpoint(instance)

    @extend_schema(request=s.ChangeTestSerializer, responses=s.EndpointDetailSerializer)
    @action(detail=True, methods=["post"])
    def change_test(self, request, **kwargs):
        """Start or change the test: which candidate, and its share of new conversations."""
        endpoint = self.get_object()
        data = s.ChangeTestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        endpoint = actions.do_change_test(
            endpoint,
            request.user,
            candidate=self.agent_by_id(values["candidate"], "candidate"),
            candidate_share=values["candidate_share"],
            note=values["note"],
        )
        return Response(self.detail_of(endpoint))

    @extend_schema(request=s.NoteSerializer, responses=s.EndpointDetailSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request, **kwargs):
        """The candidate becomes the baseline; the test ends (its results are kept in the history)."""
        return self.noted(request, actions.do_promote_candidate)

    @extend_schema(request=s.NoteSerializer, responses=s.EndpointDetailSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, **kwargs):
        """End the test: everything goes to the baseline again."""
        return self.noted(request, actions.do_stop_test)

    def noted(self, request, do):
        """``do(endpoint, user, note)`` with the note of the request body; the endpoint's detail."""
        endpoint = self.get_object()
        data = s.NoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(self.detail_of(do(endpoint, request.user, data.validated_data["note"])))


CONVERSATION_FILTERS = [
    OpenApiParameter("agent", description="An agent's slug: conversations held with it directly."),
    OpenApiParameter("endpoint", description="An endpoint's slug."),
]


class ConversationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, RuntimeViewSet):
    """Conversations with agents (from the browser chat), as the chat pages show them: a member sees their
    own, admins and owners everyone's (to read); only the person who had a conversation rates its answers
    and deletes it. An endpoint's conversation is blind: it names the endpoint, not the agent answering.
    Filter with `?agent=<slug>` (conversations with that agent directly), `?endpoint=<slug>`.

    `POST …/feedback/` rates one answer: thumbs up (1) or down (-1), with an optional comment (one rating
    per person and answer; rating again replaces it).
    """

    model = Conversation
    filter_params = {"endpoint": "endpoint__slug"}

    def get_serializer_class(self):
        return s.ConversationSerializer if self.action == "list" else s.ConversationDetailSerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        queryset = (queryset & Conversation.objects.visible_to(self.membership)).select_related(
            "agent", "endpoint", "user"
        )
        if self.request.query_params.get("agent"):  # never through an endpoint: that would tell the variant
            queryset = queryset.filter(agent__slug=self.request.query_params["agent"], endpoint=None)
        if self.action != "list":
            queryset = queryset.prefetch_related("messages__feedback__user")
        return queryset

    @extend_schema(parameters=CONVERSATION_FILTERS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def owned(self, conversation: Conversation, doing: str) -> Conversation:
        if conversation.user_id != self.request.user.pk:
            raise PermissionDenied(f"Only the person who had this conversation {doing}.")
        return conversation

    def perform_destroy(self, instance):
        actions.do_delete_conversation(self.owned(instance, "can delete it"))

    @extend_schema(request=s.FeedbackCreateSerializer, responses=s.FeedbackSerializer)
    @action(detail=True, methods=["post"])
    def feedback(self, request, **kwargs):
        conversation = self.owned(self.get_object(), "rates its answers")
        data = s.FeedbackCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        message = (
            Message.objects.for_org(self.org)
            .filter(conversation=conversation, pk=values["message"], superseded=False)
            .first()
        )
        if message is None:
            raise ActionError("No such message in this conversation.", field="message", code="not_found")
        feedback = actions.do_feedback(message, request.user, values["rating"], values["comment"])
        return Response(s.FeedbackSerializer(feedback).data)


def _moment(value: str, param: str, *, end: bool = False) -> datetime:
    """An ISO 8601 date-time, or a date (its start; its end for ``until``)."""
    moment = parse_datetime(value)
    if moment is None:
        day = None
        try:
            day = parse_date(value)
        except ValueError:
            pass
        if day is None:
            raise ActionError(
                f"`{param}` must be an ISO 8601 date or date-time, e.g. 2025-01-31 or "
                f"2025-01-31T12:00:00Z, not {value!r}.",
                field=param,
            )
        moment = datetime.combine(day, time.max if end else time.min)
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


AUDIT_FILTERS = [
    OpenApiParameter(name, description=description)
    for name, description in (
        ("agent", "An agent's slug."),
        ("endpoint", "An endpoint's slug."),
        ("outcome", "complete, stopped, interrupted, failed."),
        ("source", "chat (browser) or api (OpenAI-compatible API)."),
        ("variant", "baseline or candidate."),
        ("user", "A username."),
        ("since", "ISO 8601 date or date-time: records at or after it."),
        ("until", "ISO 8601 date or date-time: records at or before it."),
    )
]


class InferenceRecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, RuntimeViewSet):
    """The audit: one record per inference (browser chat or API) — who asked which agent, with which token,
    how many tokens, how long, and how it ended. `summary/` counts and percentiles for the same filters."""

    model = InferenceRecord
    serializer_class = s.InferenceRecordSerializer
    filter_params = {
        "agent": "agent__slug",
        "endpoint": "endpoint__slug",
        "outcome": "outcome",
        "source": "source",
        "variant": "variant",
        "user": "user__username",
    }

    def get_queryset(self):
        queryset = super().get_queryset().select_related("agent", "endpoint", "user", "token")
        params = self.request.query_params
        if params.get("since"):
            queryset = queryset.filter(created_at__gte=_moment(params["since"], "since"))
        if params.get("until"):
            queryset = queryset.filter(created_at__lte=_moment(params["until"], "until", end=True))
        return queryset

    @extend_schema(parameters=AUDIT_FILTERS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=AUDIT_FILTERS, responses=s.AuditSummarySerializer)
    @action(detail=False, methods=["get"])
    def summary(self, request, **kwargs):
        return Response(audit_summary(self.get_queryset()))
