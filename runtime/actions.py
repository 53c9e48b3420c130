"""Agents, endpoints, conversations, feedback and the audit: every write goes through here."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from projects.actions import ActionError
from projects.models import ApiToken, LanguageModel, ModelStatus, Organization, Project
from runtime.models import (
    Agent,
    AgentStatus,
    Backend,
    Conversation,
    Endpoint,
    EndpointStatus,
    Feedback,
    InferenceRecord,
    Message,
    MessageStatus,
    Promotion,
    PromotionAction,
    Variant,
)

AGENT_FIELDS = (
    "name",
    "system_prompt",
    "temperature",
    "top_p",
    "max_tokens",
    "context_length",
    "gpu_layers",
    "use_mmap",
    "threads",
    "backend",
    "model",
    "remote_url",
    "remote_model",
    "remote_api_key",
)
#: Changing these reloads the model.
RELOAD_FIELDS = {
    "model",
    "context_length",
    "gpu_layers",
    "use_mmap",
    "threads",
    "backend",
    "remote_url",
    "remote_model",
    "remote_api_key",
}


# --- agents -------------------------------------------------------------------------------------

#: Fixed paths of the agent pages (/o/<org>/agents/new/, …/agents/endpoints/): no agent or endpoint is called so.
RESERVED_SLUGS = {"new", "endpoints"}


def _unique_name(
    org: Organization, slug: str, *, exclude_agent: int | None = None, exclude_endpoint: int | None = None
) -> None:
    """Agents and endpoints share one namespace: the OpenAI API's ``model``."""
    if slug in RESERVED_SLUGS:
        raise ActionError(f"{slug!r} is reserved for the agent pages; choose another name.", field="slug")
    if (
        Agent.objects.for_org(org).filter(slug=slug).exclude(pk=exclude_agent).exists()
        or Endpoint.objects.for_org(org).filter(slug=slug).exclude(pk=exclude_endpoint).exists()
    ):
        raise ActionError(
            f"An agent or endpoint called {slug!r} already exists in this organisation.", field="slug", code="duplicate"
        )


def _check_agent(org: Organization, fields: dict) -> None:
    backend = fields.get("backend", Backend.LLAMA_CPP)
    if backend == Backend.LLAMA_CPP:
        model = fields.get("model")
        if model is None:
            raise ActionError("Pick the GGUF model this agent runs.", field="model")
        if model.organization_id != org.pk:
            raise ActionError("No such model.", field="model", code="not_found")
        if model.status == ModelStatus.FAILED:
            raise ActionError(
                f"{model.name} failed to import ({model.error or 'see its page'}); pick another model.", field="model"
            )
        if model.format != "gguf" or not model.can("chat"):
            reason = (model.capabilities.get("reasons") or {}).get("chat") or "chat runs GGUF models with llama.cpp"
            raise ActionError(
                f"{model.name} cannot be chatted with: {reason}. Convert it to GGUF first.", field="model"
            )
        trained = (model.metadata or {}).get("context_length")
        if trained and fields.get("context_length", 0) > trained:
            raise ActionError(
                f"{model.name} was trained for {trained} tokens of context; use at most that.", field="context_length"
            )
    elif backend == Backend.REMOTE:
        if not fields.get("remote_url"):
            raise ActionError("A remote agent needs the URL of an OpenAI-compatible API.", field="remote_url")
        fields["model"] = None
    else:
        raise ActionError(f"Unknown backend {backend!r}.", field="backend")


def do_create_agent(project: Project, user: User, *, slug: str = "", **fields) -> Agent:
    org = project.organization
    if project.is_archived:
        raise ActionError("This project is archived; unarchive it to add agents.", code="conflict")
    name = (fields.get("name") or "").strip()
    if not name:
        raise ActionError("Give the agent a name.", field="name")
    slug = slugify(slug or name)[:120]
    if not slug:
        raise ActionError("The name needs at least one letter or digit.", field="name")
    _check_agent(org, fields)
    _unique_name(org, slug)
    values = {k: v for k, v in fields.items() if k in AGENT_FIELDS}
    values["name"] = name
    try:
        with transaction.atomic():
            return Agent.objects.create(organization=org, project=project, slug=slug, created_by=user, **values)
    except IntegrityError:
        raise ActionError(
            f"An agent called {slug!r} already exists in this organisation.", field="slug", code="duplicate"
        ) from None


def do_update_agent(agent: Agent, **fields) -> Agent:
    values = {k: v for k, v in fields.items() if k in AGENT_FIELDS}
    if "remote_api_key" in values and not values["remote_api_key"]:
        values.pop("remote_api_key")  # blank means "keep the key"
    merged = {f: getattr(agent, f) for f in AGENT_FIELDS} | values
    if "name" in values and not (values["name"] or "").strip():
        raise ActionError("Give the agent a name.", field="name")
    _check_agent(agent.organization, merged)
    reload = any(getattr(agent, f) != merged[f] for f in RELOAD_FIELDS if f in values)
    for field, value in values.items():
        setattr(agent, field, value if field != "model" or merged["backend"] == Backend.LLAMA_CPP else None)
    agent.updated_at = timezone.now()
    agent.save()
    if reload and agent.status in (AgentStatus.LIVE, AgentStatus.FAILED, AgentStatus.DEPLOYING):
        do_deploy_agent(agent)
    return agent


def do_delete_agent(agent: Agent) -> None:
    uses = Endpoint.objects.for_org(agent.organization).filter(Q(baseline=agent) | Q(candidate=agent))
    if uses.exists():
        names = ", ".join(e.name for e in uses)
        raise ActionError(
            f"{agent.name} is used by the endpoint(s) {names}; change or delete them first.", code="conflict"
        )
    _unload(agent)
    agent.delete()


def do_deploy_agent(agent: Agent) -> Agent:
    """Mark the agent deploying and load its model in this server's process, in the background.

    The agent becomes live when the model has loaded, or failed with the reason.
    """
    if agent.backend == Backend.LLAMA_CPP and agent.model is not None and agent.model.status != ModelStatus.READY:
        raise ActionError(f"{agent.model.name} is still being imported; deploy when it is ready.", code="conflict")
    Agent.objects.for_org(agent.organization).filter(pk=agent.pk).update(
        status=AgentStatus.DEPLOYING, error="", updated_at=timezone.now()
    )
    agent.status, agent.error = AgentStatus.DEPLOYING, ""
    agent_id, org_id = agent.pk, agent.organization_id
    from runtime import serving

    transaction.on_commit(lambda: serving.start_in_background(finish_deployment, org_id, agent_id))
    return agent


def finish_deployment(org_id: int, agent_id: int) -> Agent | None:
    """Load the agent's model now and record the outcome (called in a background thread)."""
    from runtime import serving
    from runtime.engine.chat import InferenceError

    org = Organization.objects.get(pk=org_id)
    agent = Agent.objects.for_org(org).select_related("model").filter(pk=agent_id).first()
    if agent is None or agent.status != AgentStatus.DEPLOYING:
        return agent
    try:
        facts = serving.warm_up(agent)
    except (InferenceError, ValueError, StopIteration, OSError) as error:
        message = str(error) if not isinstance(error, StopIteration) else "The model's file is missing from storage."
        Agent.objects.for_org(org).filter(pk=agent_id, status=AgentStatus.DEPLOYING).update(
            status=AgentStatus.FAILED, error=message, updated_at=timezone.now()
        )
    else:
        Agent.objects.for_org(org).filter(pk=agent_id, status=AgentStatus.DEPLOYING).update(
            status=AgentStatus.LIVE, error="", deployment=facts, deployed_at=timezone.now(), updated_at=timezone.now()
        )
    return Agent.objects.for_org(org).get(pk=agent_id)


def _unload(agent: Agent) -> None:
    if agent.backend != Backend.LLAMA_CPP or agent.model_id is None:
        return
    from runtime import serving

    still_used = (
        Agent.objects.for_org(agent.organization)
        .filter(model_id=agent.model_id, status=AgentStatus.LIVE)
        .exclude(pk=agent.pk)
    )
    if not still_used.exists():
        try:
            serving.model_cache().evict(serving.load_spec(agent).path)
        except Exception:  # noqa: BLE001 - the model may be gone already; nothing to unload then
            pass


def do_undeploy_agent(agent: Agent) -> Agent:
    Agent.objects.for_org(agent.organization).filter(pk=agent.pk).update(
        status=AgentStatus.UNDEPLOYED, error="", updated_at=timezone.now()
    )
    agent.status, agent.error = AgentStatus.UNDEPLOYED, ""
    _unload(agent)
    return agent


def lineage(model: LanguageModel | None) -> list[LanguageModel]:
    """The model, what it was derived from, and so on back to its origin."""
    chain, seen = [], set()
    while model is not None and model.pk not in seen:
        chain.append(model)
        seen.add(model.pk)
        model = model.derived_from
    return chain


# --- endpoints (A/B tests) ----------------------------------------------------------------------


def _check_endpoint_agents(org: Organization, baseline: Agent, candidate: Agent | None) -> None:
    for agent in (baseline, candidate):
        if agent is not None and agent.organization_id != org.pk:
            raise ActionError("No such agent.", code="not_found")
    if candidate is not None and candidate.pk == baseline.pk:
        raise ActionError("The candidate must be a different agent from the baseline.", field="candidate")


def _record(endpoint: Endpoint, action: str, user: User, note: str = "") -> Promotion:
    from runtime.queries import ab_results

    return Promotion.objects.create(
        endpoint=endpoint,
        action=action,
        baseline=endpoint.baseline,
        candidate=endpoint.candidate,
        candidate_share=endpoint.candidate_share if endpoint.candidate_id else 0,
        results=ab_results(endpoint),
        note=note[:500],
        by=user,
    )


def do_create_endpoint(
    project: Project,
    user: User,
    *,
    name: str,
    baseline: Agent,
    candidate: Agent | None = None,
    candidate_share: float = 0.5,
    slug: str = "",
) -> Endpoint:
    org = project.organization
    name = (name or "").strip()
    if not name:
        raise ActionError("Give the endpoint a name.", field="name")
    slug = slugify(slug or name)[:120]
    if not slug:
        raise ActionError("The name needs at least one letter or digit.", field="name")
    if not 0 <= candidate_share <= 1:
        raise ActionError("The candidate's share of traffic is between 0 and 1.", field="candidate_share")
    _check_endpoint_agents(org, baseline, candidate)
    _unique_name(org, slug)
    with transaction.atomic():
        endpoint = Endpoint.objects.create(
            organization=org,
            project=project,
            name=name,
            slug=slug,
            baseline=baseline,
            candidate=candidate,
            candidate_share=candidate_share,
            created_by=user,
        )
        if candidate is not None:
            _record(endpoint, PromotionAction.STARTED, user)
    return endpoint


def do_change_test(
    endpoint: Endpoint, user: User, *, candidate: Agent | None, candidate_share: float, note: str = ""
) -> Endpoint:
    if not 0 <= candidate_share <= 1:
        raise ActionError("The candidate's share of traffic is between 0 and 1.", field="candidate_share")
    _check_endpoint_agents(endpoint.organization, endpoint.baseline, candidate)
    with transaction.atomic():
        was_testing = endpoint.testing
        endpoint.candidate, endpoint.candidate_share, endpoint.status = (
            candidate,
            candidate_share,
            EndpointStatus.RUNNING,
        )
        endpoint.save()
        if candidate is not None:
            _record(endpoint, PromotionAction.CHANGED if was_testing else PromotionAction.STARTED, user, note)
    return endpoint


def do_promote_candidate(endpoint: Endpoint, user: User, note: str = "") -> Endpoint:
    if endpoint.candidate_id is None:
        raise ActionError("This endpoint has no candidate to promote.", code="conflict")
    with transaction.atomic():
        _record(endpoint, PromotionAction.PROMOTED, user, note)
        endpoint.baseline, endpoint.candidate = endpoint.candidate, None
        endpoint.status = EndpointStatus.STOPPED
        endpoint.save()
    return endpoint


def do_stop_test(endpoint: Endpoint, user: User, note: str = "") -> Endpoint:
    if not endpoint.testing:
        raise ActionError("No test is running on this endpoint.", code="conflict")
    with transaction.atomic():
        _record(endpoint, PromotionAction.STOPPED, user, note)
        endpoint.candidate = None
        endpoint.status = EndpointStatus.STOPPED
        endpoint.save()
    return endpoint


def do_delete_endpoint(endpoint: Endpoint) -> None:
    endpoint.delete()


def choose_variant(endpoint: Endpoint, key: str) -> tuple[Agent, str]:
    """The agent answering a conversation identified by ``key``: sticky (same key, same variant) and
    split by ``candidate_share`` (a hash of endpoint and key, uniform over [0, 1))."""
    if not endpoint.testing:
        return endpoint.baseline, Variant.BASELINE
    digest = hashlib.sha256(f"{endpoint.pk}:{endpoint.candidate_id}:{key}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    if draw < endpoint.candidate_share:
        return endpoint.candidate, Variant.CANDIDATE
    return endpoint.baseline, Variant.BASELINE


def api_conversation_key(messages: list[dict], user: str = "") -> str:
    """The :func:`choose_variant` key of a conversation held over the OpenAI-compatible API.

    The API keeps no conversation: a client re-sends the whole history with every request. The
    caller's ``user`` field names the conversation's owner when given; otherwise the first system
    and the first user message — the beginning every later request of the same conversation
    re-sends — identify it, so each of its turns is answered by the same variant.
    """
    if user:
        return f"api-user:{user}"
    first: dict[str, str] = {}
    for message in messages:
        if message["role"] in ("system", "user"):
            first.setdefault(message["role"], message["content"])
    digest = hashlib.sha256(json.dumps([first.get("system", ""), first.get("user", "")]).encode()).hexdigest()
    return f"api:{digest}"


# --- conversations ------------------------------------------------------------------------------


def do_start_conversation(
    org: Organization, user: User, *, agent: Agent | None = None, endpoint: Endpoint | None = None
) -> Conversation:
    if endpoint is not None:
        with transaction.atomic():
            conversation = Conversation.objects.create(
                organization=org, agent=endpoint.baseline, endpoint=endpoint, user=user
            )
            chosen, variant = choose_variant(endpoint, f"conversation:{conversation.pk}")
            conversation.agent, conversation.variant = chosen, variant
            conversation.save(update_fields=["agent", "variant"])
        return conversation
    if agent is None:
        raise ActionError("Pick an agent or an endpoint to talk to.")
    return Conversation.objects.create(organization=org, agent=agent, user=user)


def clean_message(content: object) -> str:
    if not isinstance(content, str):
        raise ActionError("A message is text.", field="content")
    content = content.strip()
    if not content:
        raise ActionError("The message is empty.", field="content")
    if len(content) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ActionError(
            f"The message is {len(content)} characters; the limit is {settings.CHAT_MAX_MESSAGE_CHARS}.",
            field="content",
        )
    return content


def _check_ready(conversation: Conversation) -> None:
    agent = conversation.agent
    if agent.status != AgentStatus.LIVE:
        raise ActionError(
            f"{agent.name if not conversation.endpoint_id else conversation.endpoint.name} is not deployed "
            f"({agent.get_status_display().lower()}); deploy it first.",
            code="conflict",
        )
    reap_stale_answers(conversation)
    if conversation.messages.filter(status=MessageStatus.STREAMING).exists():
        raise ActionError("An answer is still being written in this conversation; stop it or wait.", code="conflict")


def _new_answer(conversation: Conversation) -> Message:
    now = timezone.now()
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        status=MessageStatus.STREAMING,
        agent=conversation.agent,
        created_at=now,
        updated_at=now,
    )


def do_post_message(conversation: Conversation, content: object) -> tuple[Message, Message]:
    """Store the user's message (before anything is generated) and an empty answer to stream into."""
    content = clean_message(content)
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        _check_ready(conversation)
        user_message = Message.objects.create(conversation=conversation, role="user", content=content)
        answer = _new_answer(conversation)
        fields = {"updated_at": timezone.now()}
        if not conversation.title:
            fields["title"] = content[:80]
        Conversation.objects.filter(pk=conversation.pk).update(**fields)
    return user_message, answer


def do_regenerate(conversation: Conversation) -> Message:
    """Set the last answer aside (kept, marked superseded) and start a new one."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        _check_ready(conversation)
        last = conversation.messages.filter(superseded=False).last()
        if last is None or last.role != "assistant":
            raise ActionError("There is no answer to regenerate yet.", code="conflict")
        Message.objects.filter(pk=last.pk).update(superseded=True)
        return _new_answer(conversation)


def prompt_messages(conversation: Conversation, agent: Agent, *, before: Message) -> list[dict]:
    """System prompt and the conversation so far (answers that failed or were replaced left out)."""
    messages = [{"role": "system", "content": agent.system_prompt}] if agent.system_prompt else []
    history = (
        conversation.messages.filter(superseded=False, id__lt=before.pk)
        .exclude(status=MessageStatus.FAILED)
        .exclude(content="")
    )
    messages += [{"role": m.role, "content": m.content} for m in history]
    return messages


def do_save_partial(answer_id: int, content: str) -> None:
    Message.objects.filter(pk=answer_id, status=MessageStatus.STREAMING).update(
        content=content, updated_at=timezone.now()
    )


def do_finish_answer(
    answer: Message,
    *,
    status: str,
    content: str,
    error: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    ttft_ms: int | None = None,
    duration_ms: int | None = None,
    dropped_messages: int = 0,
) -> Message:
    """The answer's final state and its audit row, together."""
    conversation = answer.conversation
    with transaction.atomic():
        Message.objects.filter(pk=answer.pk).update(
            status=status,
            content=content,
            error=error,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ttft_ms=ttft_ms,
            duration_ms=duration_ms,
            dropped_messages=dropped_messages,
            updated_at=timezone.now(),
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        agent = conversation.agent
        do_record_inference(
            conversation.organization,
            agent=agent,
            source="chat",
            user=conversation.user,
            conversation=conversation,
            message=answer,
            endpoint=conversation.endpoint,
            variant=conversation.variant,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ttft_ms=ttft_ms,
            latency_ms=duration_ms or 0,
            outcome=status,
            error=error,
        )
    answer.refresh_from_db()
    return answer


def reap_stale_answers(conversation: Conversation | None = None, org: Organization | None = None) -> int:
    """Answers left "streaming" by a server that stopped mid-answer become "interrupted" (their text kept)."""
    cutoff = timezone.now() - timedelta(seconds=settings.CHAT_STALE_STREAM_SECONDS)
    stale = Message.objects.filter(status=MessageStatus.STREAMING, updated_at__lt=cutoff)
    if conversation is not None:
        stale = stale.filter(conversation=conversation)
    elif org is not None:
        stale = stale.for_org(org)
    return stale.update(
        status=MessageStatus.INTERRUPTED, error="The server stopped while this answer was being written."
    )


def do_feedback(message: Message, user: User, rating: int, comment: str = "") -> Feedback:
    if message.role != "assistant":
        raise ActionError("Feedback is given on answers.", code="conflict")
    if rating not in (1, -1):
        raise ActionError("Rate an answer with 1 (thumbs up) or -1 (thumbs down).", field="rating")
    comment = (comment or "").strip()
    if len(comment) > 2000:
        raise ActionError("Keep the comment under 2,000 characters.", field="comment")
    feedback, _ = Feedback.objects.update_or_create(
        message=message, user=user, defaults={"rating": rating, "comment": comment}
    )
    return feedback


def do_delete_conversation(conversation: Conversation) -> None:
    from pathlib import Path

    for state in Path(settings.AGENT_STATE_DIR).glob(f"conversation-{conversation.pk}-*"):
        state.unlink(missing_ok=True)
    conversation.delete()


# --- audit --------------------------------------------------------------------------------------


def do_record_inference(
    org: Organization,
    *,
    agent: Agent,
    source: str,
    outcome: str,
    user: User | None = None,
    token: ApiToken | None = None,
    conversation: Conversation | None = None,
    message: Message | None = None,
    endpoint: Endpoint | None = None,
    variant: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    ttft_ms: int | None = None,
    latency_ms: int = 0,
    error: str = "",
) -> InferenceRecord:
    return InferenceRecord.objects.create(
        organization=org,
        agent=agent,
        model_id=agent.model_id if agent else None,
        endpoint=endpoint,
        variant=variant or "",
        conversation=conversation,
        message=message,
        user=user,
        token=token,
        source=source,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        ttft_ms=ttft_ms,
        latency_ms=latency_ms,
        outcome=outcome,
        error=error[:2000],
    )
