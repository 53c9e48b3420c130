"""htmx pages of the runtime: agents, chat, endpoints (A/B tests) and the inference audit.

Chat itself streams over the websocket of runtime/consumers.py; these pages render what is
stored (conversations, answers, feedback) and post every change through runtime/actions.py.
An endpoint's conversations are blind: their pages name the endpoint, never the agent or variant.
"""

from __future__ import annotations

from datetime import datetime, time

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone

from projects.actions import ActionError
from projects.models import LanguageModel, Membership, ModelStatus, Project, Role
from projects.views.base import OrgPageView, OrgView
from runtime import actions
from runtime.forms import AgentForm, AuditFilterForm, ChangeTestForm, EndpointForm, FeedbackForm, NoteForm
from runtime.models import Agent, AgentStatus, Conversation, Endpoint, Feedback, InferenceRecord

AUDIT_PAGE_SIZE = 50
SIDEBAR_CONVERSATIONS = 50


class RuntimeMixin:
    """Lookups shared by the runtime pages, all through OrgView's scope."""

    def get_agent(self, slug: str, *related: str) -> Agent:
        return self.get_scoped(Agent.objects.select_related("project", *related), slug=slug)

    def get_endpoint(self, slug: str) -> Endpoint:
        return self.get_scoped(Endpoint.objects.select_related("project", "baseline", "candidate"), slug=slug)

    def conversations(self):
        """Conversations this person may open: their own; an admin's or owner's: everyone's."""
        return self.scoped(Conversation.objects.visible_to(self.membership))

    def chat_models(self, include=None):
        """Ready GGUF models of the organisation that can chat (plus ``include``, an agent's current model)."""
        candidates = self.scoped(LanguageModel).filter(status=ModelStatus.READY, format="gguf")
        ids = [m.pk for m in candidates.only("pk", "capabilities") if m.can("chat")]
        if include is not None:
            ids.append(include)
        return self.scoped(LanguageModel).filter(pk__in=ids).select_related("project").order_by("name")

    @property
    def can_write(self) -> bool:
        return self.membership.has_role(Role.MEMBER)


# --- agents -------------------------------------------------------------------------------------


class AgentListView(RuntimeMixin, OrgPageView):
    template_name = "runtime/agent_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            agents=self.scoped(Agent).select_related("project", "model"),
            can_write=self.can_write,
        )
        return context


class AgentFormView(RuntimeMixin, OrgPageView):
    """Create an agent (no ``agent_slug``) or edit one."""

    template_name = "runtime/agent_form.html"

    def dispatch(self, request, *args, **kwargs):
        self.agent_slug = kwargs.pop("agent_slug", None)
        return super().dispatch(request, *args, **kwargs)

    def agent(self) -> Agent | None:
        if self.agent_slug is None:
            return None
        if not hasattr(self, "_agent"):
            self._agent = self.get_agent(self.agent_slug)
        return self._agent

    def form(self, data=None) -> AgentForm:
        agent = self.agent()
        if agent is None:
            project = self.request.GET.get("project")
            return AgentForm(
                data,
                models=self.chat_models(),
                projects=self.scoped(Project).active(),
                initial={"project": project} if project else None,
            )
        initial = {field: getattr(agent, field) for field in actions.AGENT_FIELDS if field != "remote_api_key"}
        return AgentForm(
            data, models=self.chat_models(include=agent.model_id), initial=initial, has_key=bool(agent.remote_api_key)
        )

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", self.form())
        context.update(
            agent=self.agent(),
            can_write=self.can_write,
            has_projects=self.agent() is not None or self.scoped(Project).active().exists(),
        )
        return context

    def post(self, request, *args, **kwargs):
        form = self.form(request.POST)
        agent = self.agent()
        if form.is_valid():
            try:
                if agent is None:
                    project = self.get_scoped(Project, slug=form.cleaned_data["project"])
                    agent = actions.do_create_agent(project, request.user, **form.agent_fields())
                    messages.success(request, f"Agent {agent} created. Deploy it to chat with it.")
                else:
                    was = agent.status
                    agent = actions.do_update_agent(agent, **form.agent_fields())
                    redeploying = agent.status == AgentStatus.DEPLOYING and was != AgentStatus.DEPLOYING
                    messages.success(
                        request,
                        f"Agent {agent} saved"
                        + ("; it is being redeployed with the new settings." if redeploying else "."),
                    )
            except ActionError as error:
                field = "name" if error.field == "slug" else error.field
                form.add_error(field if field in form.fields else None, error.message)
            else:
                return redirect("agent-detail", org_slug=self.org.slug, agent_slug=agent.slug)
        return self.render_to_response(self.get_context_data(form=form), status=400)


def loaded_info(agent: Agent) -> dict | None:
    """What this server's model cache holds for the agent's model (None when it is not loaded)."""
    if not agent.is_live:
        return None
    from runtime import serving

    entry = serving.loaded_entry(agent)
    if entry is None:
        return None
    return {
        **entry,
        "loaded_at": _from_timestamp(entry.get("loaded_at")),
        "last_used": _from_timestamp(entry.get("last_used")),
    }


def _from_timestamp(value) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.get_current_timezone()) if value else None


class AgentDetailView(RuntimeMixin, OrgPageView):
    template_name = "runtime/agent_detail.html"

    def get_template_names(self):
        # While deploying, the status panel refreshes itself (hx-get ?fragment=status) until live or failed.
        if self.request.GET.get("fragment") == "status":
            return ["runtime/_agent_status.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        agent = self.get_agent(kwargs["agent_slug"], "model", "model__project", "model__derived_from", "created_by")
        context.update(agent=agent, can_write=self.can_write, loaded=loaded_info(agent))
        if self.request.GET.get("fragment") == "status":
            return context
        conversations = self.conversations().filter(agent=agent, endpoint=None).select_related("user")
        context.update(
            lineage=actions.lineage(agent.model),
            conversations=conversations[:SIDEBAR_CONVERSATIONS],
            endpoints=self.scoped(Endpoint).filter(Q(baseline=agent) | Q(candidate=agent)),
        )
        return context


class AgentActionView(RuntimeMixin, OrgView):
    """POST-only: deploy, undeploy, delete, chat (start a conversation)."""

    def post(self, request, agent_slug: str, action: str):
        agent = self.get_agent(agent_slug, "model")
        here = reverse("agent-detail", kwargs={"org_slug": self.org.slug, "agent_slug": agent.slug})
        try:
            if action == "deploy":
                actions.do_deploy_agent(agent)
                messages.info(request, f"Deploying {agent}: the status below changes when it is live.")
            elif action == "undeploy":
                actions.do_undeploy_agent(agent)
                messages.success(request, f"{agent} is no longer deployed.")
            elif action == "delete":
                actions.do_delete_agent(agent)
                messages.success(request, f"Agent {agent} deleted.")
                return redirect("agent-list", org_slug=self.org.slug)
            elif action == "chat":
                conversation = actions.do_start_conversation(self.org, request.user, agent=agent)
                return redirect(
                    "agent-conversation", org_slug=self.org.slug, agent_slug=agent.slug, conversation_id=conversation.pk
                )
            else:
                raise Http404
        except ActionError as error:
            return self.action_failed(error, here)
        return redirect(here)


class AuditView(RuntimeMixin, OrgPageView):
    """Every inference of one agent: filters, counts, latency percentiles, a paginated table."""

    template_name = "runtime/audit.html"

    def get_context_data(self, **kwargs):
        from runtime.queries import audit_summary

        context = super().get_context_data(**kwargs)
        agent = self.get_agent(kwargs["agent_slug"])
        records = self.scoped(InferenceRecord).filter(agent=agent)
        users = [m.user for m in self.scoped(Membership).select_related("user").order_by("user__username")]
        form = AuditFilterForm(self.request.GET or None, users=users)
        filters = {}
        if form.is_bound:
            form.is_valid()  # invalid fields are shown and left out; valid ones apply
            filters = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
        if "outcome" in filters:
            records = records.filter(outcome=filters["outcome"])
        if "source" in filters:
            records = records.filter(source=filters["source"])
        if "user" in filters:
            records = records.filter(user_id=filters["user"])
        if "since" in filters:
            records = records.filter(created_at__gte=timezone.make_aware(datetime.combine(filters["since"], time.min)))
        page = Paginator(records.select_related("user", "model", "endpoint", "token"), AUDIT_PAGE_SIZE).get_page(
            self.request.GET.get("page")
        )
        query = self.request.GET.copy()
        query.pop("page", None)
        context.update(
            agent=agent,
            form=form,
            summary=audit_summary(records),
            page=page,
            filtered=bool(filters),
            query=query.urlencode(),
        )
        return context


# --- chat ---------------------------------------------------------------------------------------


class ConversationMixin(RuntimeMixin):
    """A conversation reached through its agent (direct) or its endpoint (blind), never the other way."""

    def subject(self, kwargs) -> tuple[Agent | None, Endpoint | None]:
        if "endpoint_slug" in kwargs:
            return None, self.get_endpoint(kwargs["endpoint_slug"])
        return self.get_agent(kwargs["agent_slug"]), None

    def subject_conversations(self, agent, endpoint):
        if endpoint is not None:
            return self.conversations().filter(endpoint=endpoint)
        return self.conversations().filter(agent=agent, endpoint=None)

    def get_conversation(self, kwargs) -> tuple[Conversation, Agent | None, Endpoint | None]:
        agent, endpoint = self.subject(kwargs)
        conversation = get_object_or_404(
            self.subject_conversations(agent, endpoint).select_related("user"), pk=kwargs["conversation_id"]
        )
        return conversation, agent, endpoint

    def conversation_url(self, conversation, agent, endpoint, name: str = "conversation", **extra) -> str:
        if endpoint is not None:
            return reverse(
                f"endpoint-{name}",
                kwargs={
                    "org_slug": self.org.slug,
                    "endpoint_slug": endpoint.slug,
                    "conversation_id": conversation.pk,
                    **extra,
                },
            )
        return reverse(
            f"agent-{name}",
            kwargs={"org_slug": self.org.slug, "agent_slug": agent.slug, "conversation_id": conversation.pk, **extra},
        )

    def is_owner(self, conversation) -> bool:
        return conversation.user_id == self.request.user.pk and self.can_write


class ConversationView(ConversationMixin, OrgPageView):
    template_name = "runtime/chat.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        conversation, agent, endpoint = self.get_conversation(kwargs)
        actions.reap_stale_answers(conversation)
        chat_messages = list(conversation.messages.filter(superseded=False))
        mine = {
            f.message_id: f
            for f in self.scoped(Feedback).filter(message__conversation=conversation, user=self.request.user)
        }
        feedback_url_template = self.conversation_url(conversation, agent, endpoint, "feedback", message_id=0)
        for message in chat_messages:
            message.my_feedback = mine.get(message.pk)
            message.feedback_url = feedback_url_template.replace("/messages/0/", f"/messages/{message.pk}/")
        last_answer = next((m for m in reversed(chat_messages) if m.role == "assistant"), None)
        mine_only = self.subject_conversations(agent, endpoint).filter(user=self.request.user)
        context.update(
            conversation=conversation,
            agent=agent,
            endpoint=endpoint,
            # The endpoint's name only: which agent (variant) answers stays hidden.
            subject_name=endpoint.name if endpoint is not None else agent.name,
            subject_live=None if endpoint is not None else agent.is_live,
            chat_messages=chat_messages,
            last_answer_id=last_answer.pk if last_answer else None,
            sidebar=mine_only[:SIDEBAR_CONVERSATIONS],
            can_write=self.is_owner(conversation),
            can_start=self.can_write,
            socket_path=f"/ws/o/{self.org.slug}/conversations/{conversation.pk}/",
            feedback_url_template=feedback_url_template,
            delete_url=self.conversation_url(conversation, agent, endpoint, "conversation-delete"),
            new_url=(
                reverse(
                    "endpoint-action",
                    kwargs={"org_slug": self.org.slug, "endpoint_slug": endpoint.slug, "action": "chat"},
                )
                if endpoint is not None
                else reverse(
                    "agent-action", kwargs={"org_slug": self.org.slug, "agent_slug": agent.slug, "action": "chat"}
                )
            ),
        )
        return context


class ConversationDeleteView(ConversationMixin, OrgView):
    def post(self, request, **kwargs):
        conversation, agent, endpoint = self.get_conversation(kwargs)
        if conversation.user_id != request.user.pk:
            raise PermissionDenied("Only the person who had this conversation can delete it.")
        actions.do_delete_conversation(conversation)
        messages.success(request, f"{conversation} deleted.")
        if endpoint is not None:
            return redirect("endpoint-detail", org_slug=self.org.slug, endpoint_slug=endpoint.slug)
        return redirect("agent-detail", org_slug=self.org.slug, agent_slug=agent.slug)


class FeedbackView(ConversationMixin, OrgView):
    """POST a thumbs up or down (and a comment) on an answer; htmx gets the widget back."""

    template_name = "runtime/_feedback.html"

    def post(self, request, message_id: int, **kwargs):
        conversation, agent, endpoint = self.get_conversation(kwargs)
        if not self.is_owner(conversation):
            raise PermissionDenied("Only the person who had this conversation rates its answers.")
        message = get_object_or_404(conversation.messages.filter(role="assistant", superseded=False), pk=message_id)
        form = FeedbackForm(request.POST)
        error = ""
        if not form.is_valid():
            error = "Choose thumbs up or thumbs down (a comment is optional, up to 2,000 characters)."
        else:
            try:
                message.my_feedback = actions.do_feedback(
                    message, request.user, form.cleaned_data["rating"], form.cleaned_data["comment"]
                )
            except ActionError as failure:
                error = failure.message
        if not self.is_htmx:
            if error:
                messages.error(request, error)
            return redirect(self.conversation_url(conversation, agent, endpoint))
        if error:
            message.my_feedback = self.scoped(Feedback).filter(message=message, user=request.user).first()
        url = self.conversation_url(conversation, agent, endpoint, "feedback", message_id=message.pk)
        return self.render_to_response(
            {"message": message, "feedback_url": url, "feedback_error": error, "saved": not error}
        )


# --- endpoints (A/B tests) ----------------------------------------------------------------------


class EndpointListView(RuntimeMixin, OrgPageView):
    template_name = "runtime/endpoint_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            endpoints=self.scoped(Endpoint).select_related("project", "baseline", "candidate"), can_write=self.can_write
        )
        return context


class EndpointCreateView(RuntimeMixin, OrgPageView):
    template_name = "runtime/endpoint_form.html"

    def form(self, data=None) -> EndpointForm:
        return EndpointForm(
            data, agents=self.scoped(Agent).select_related("project"), projects=self.scoped(Project).active()
        )

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.setdefault("form", self.form())
        context.update(can_write=self.can_write, has_agents=self.scoped(Agent).exists())
        return context

    def post(self, request, *args, **kwargs):
        form = self.form(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            project = self.get_scoped(Project, slug=data["project"])
            try:
                endpoint = actions.do_create_endpoint(
                    project,
                    request.user,
                    name=data["name"],
                    baseline=data["baseline"],
                    candidate=data["candidate"],
                    candidate_share=data["candidate_share"],
                )
            except ActionError as error:
                field = "name" if error.field == "slug" else error.field
                form.add_error(field if field in form.fields else None, error.message)
            else:
                messages.success(request, f"Endpoint {endpoint} created.")
                return redirect("endpoint-detail", org_slug=self.org.slug, endpoint_slug=endpoint.slug)
        return self.render_to_response(self.get_context_data(form=form), status=400)


VARIANT_LABELS = {"baseline": "Baseline", "candidate": "Candidate"}


class EndpointDetailView(RuntimeMixin, OrgPageView):
    template_name = "runtime/endpoint_detail.html"

    def get_context_data(self, **kwargs):
        from runtime.queries import ab_results

        context = super().get_context_data(**kwargs)
        endpoint = self.get_endpoint(kwargs["endpoint_slug"])
        results = ab_results(endpoint)
        agents = {"baseline": endpoint.baseline, "candidate": endpoint.candidate}
        context.update(
            endpoint=endpoint,
            can_write=self.can_write,
            results=[{"variant": v, "label": VARIANT_LABELS[v], "agent": agents[v], **r} for v, r in results.items()],
            history=endpoint.history.select_related("baseline", "candidate", "by"),
            change_form=ChangeTestForm(
                agents=self.scoped(Agent),
                initial={"candidate": endpoint.candidate_id, "candidate_share": endpoint.candidate_share},
            ),
            note_form=NoteForm(),
            conversations=self.conversations().filter(endpoint=endpoint, user=self.request.user)[
                :SIDEBAR_CONVERSATIONS
            ],
        )
        return context


class EndpointActionView(RuntimeMixin, OrgView):
    """POST-only: change (the test), promote, stop, chat (a blind conversation), delete."""

    def post(self, request, endpoint_slug: str, action: str):
        endpoint = self.get_endpoint(endpoint_slug)
        here = reverse("endpoint-detail", kwargs={"org_slug": self.org.slug, "endpoint_slug": endpoint.slug})
        note = NoteForm(request.POST)
        note = note.cleaned_data["note"] if note.is_valid() else ""
        try:
            if action == "change":
                form = ChangeTestForm(request.POST, agents=self.scoped(Agent))
                if not form.is_valid():
                    raise ActionError("Choose a candidate agent (or none) and a share between 0 and 1.")
                actions.do_change_test(
                    endpoint,
                    request.user,
                    candidate=form.cleaned_data["candidate"],
                    candidate_share=form.cleaned_data["candidate_share"],
                    note=form.cleaned_data["note"],
                )
                messages.success(
                    request, "Test updated." if endpoint.candidate_id else "The baseline now answers everything."
                )
            elif action == "promote":
                promoted = endpoint.candidate
                actions.do_promote_candidate(endpoint, request.user, note)
                messages.success(request, f"{promoted} promoted: it is now the baseline of {endpoint}.")
            elif action == "stop":
                actions.do_stop_test(endpoint, request.user, note)
                messages.success(request, f"Test stopped: the baseline answers every new conversation of {endpoint}.")
            elif action == "chat":
                conversation = actions.do_start_conversation(self.org, request.user, endpoint=endpoint)
                return redirect(
                    "endpoint-conversation",
                    org_slug=self.org.slug,
                    endpoint_slug=endpoint.slug,
                    conversation_id=conversation.pk,
                )
            elif action == "delete":
                actions.do_delete_endpoint(endpoint)
                messages.success(request, f"Endpoint {endpoint} deleted.")
                return redirect("endpoint-list", org_slug=self.org.slug)
            else:
                raise Http404
        except ActionError as error:
            return self.action_failed(error, here)
        return redirect(here)
