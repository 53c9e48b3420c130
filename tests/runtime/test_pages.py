"""The runtime's htmx pages: agents (forms, deployment status), chat, endpoints, audit, feedback, roles."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runtime import actions
from runtime.models import (
    Agent,
    AgentStatus,
    Conversation,
    Endpoint,
    Feedback,
    InferenceRecord,
    Message,
    Promotion,
)

HTMX = {"HTTP_HX_REQUEST": "true"}


def url(actors, name, **kwargs):
    return reverse(name, kwargs={"org_slug": actors.org.slug, **kwargs})


def remote_agent(actors, name, **fields):
    """An agent that needs no model file (never deployed in these tests)."""
    return actions.do_create_agent(
        actors.project, actors.owner, name=name, backend="remote", remote_url="http://127.0.0.1:9/v1", **fields
    )


def agent_form(actors, gguf_model, **overrides):
    data = {
        "name": "Cardio helper",
        "project": actors.project.slug,
        "backend": "llama_cpp",
        "model": gguf_model.pk,
        "system_prompt": "You are terse.",
        "temperature": "0",
        "top_p": "0.9",
        "max_tokens": "16",
        "context_length": "256",
        "gpu_layers": "",
        "use_mmap": "on",
        "threads": "",
        "remote_url": "",
        "remote_model": "",
        "remote_api_key": "",
    }
    data.update(overrides)
    return data


def wait_for_status(client, actors, agent, wanted, timeout=30.0) -> str:
    status_url = url(actors, "agent-detail", agent_slug=agent.slug) + "?fragment=status"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        html = client.get(status_url, **HTMX).content.decode()
        if f'data-agent-status="{wanted}"' in html:
            return html
        time.sleep(0.1)
    pytest.fail(f"agent {agent.slug} never became {wanted}; last fragment:\n{html}")


# --- agents ---------------------------------------------------------------------------------------


def test_create_edit_and_deploy_an_agent_through_the_forms(actors, chat_model, client_as):
    client = client_as(actors.member)
    page = client.get(url(actors, "agent-create"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "tiny chat" in html and "free GPU memory" in html and 'type="password"' in html

    # Refused input is shown in the form, and nothing is kept.
    missing = client.post(url(actors, "agent-create"), agent_form(actors, chat_model, model=""))
    assert missing.status_code == 400 and "Pick the GGUF model this agent runs." in missing.content.decode()
    reserved = client.post(url(actors, "agent-create"), agent_form(actors, chat_model, name="New"))
    assert reserved.status_code == 400 and "reserved" in reserved.content.decode()
    too_long = client.post(url(actors, "agent-create"), agent_form(actors, chat_model, context_length="4096"))
    assert too_long.status_code == 400 and "trained for 512 tokens" in too_long.content.decode()
    assert not Agent.objects.for_org(actors.org).exists()

    created = client.post(url(actors, "agent-create"), agent_form(actors, chat_model))
    agent = Agent.objects.for_org(actors.org).get()
    assert created.status_code == 302 and created["Location"] == url(actors, "agent-detail", agent_slug="cardio-helper")
    assert (agent.model_id, agent.temperature, agent.max_tokens, agent.context_length) == (chat_model.pk, 0.0, 16, 256)
    assert (
        agent.gpu_layers is None and agent.threads is None and agent.use_mmap and agent.status == AgentStatus.UNDEPLOYED
    )

    detail = client.get(url(actors, "agent-detail", agent_slug=agent.slug)).content.decode()
    assert "Not deployed" in detail and ">Deploy<" in detail and "New conversation" in detail
    assert "tiny chat" in detail and "teacher" in detail  # the model and its lineage
    assert "automatic" in detail and "all cores" in detail

    # Deploying loads the model in the background; the status fragment polls until it is live.
    assert client.post(url(actors, "agent-action", agent_slug=agent.slug, action="deploy")).status_code == 302
    fragment = wait_for_status(client, actors, agent, "live")
    assert "hx-trigger" not in fragment  # polling stops once deployed
    assert "In memory" in fragment and "Undeploy" in fragment and "Loaded in" in fragment

    # Editing a generation setting keeps it live; editing the context length redeploys it.
    edit = client.get(url(actors, "agent-edit", agent_slug=agent.slug))
    assert edit.status_code == 200 and "You are terse.</textarea>" in edit.content.decode()
    assert (
        client.post(
            url(actors, "agent-edit", agent_slug=agent.slug), agent_form(actors, chat_model, temperature="0.5")
        ).status_code
        == 302
    )
    agent.refresh_from_db()
    assert agent.temperature == 0.5 and agent.status == AgentStatus.LIVE
    client.post(
        url(actors, "agent-edit", agent_slug=agent.slug),
        agent_form(actors, chat_model, temperature="0.5", context_length="384"),
    )
    agent.refresh_from_db()
    assert agent.context_length == 384
    wait_for_status(client, actors, agent, "live")

    # A conversation starts from the agent page, and is listed there.
    started = client.post(url(actors, "agent-action", agent_slug=agent.slug, action="chat"))
    conversation = Conversation.objects.for_org(actors.org).get()
    assert started["Location"] == url(
        actors, "agent-conversation", agent_slug=agent.slug, conversation_id=conversation.pk
    )
    assert (
        f"Conversation {conversation.pk}"
        in client.get(url(actors, "agent-detail", agent_slug=agent.slug)).content.decode()
    )

    assert client.post(url(actors, "agent-action", agent_slug=agent.slug, action="undeploy")).status_code == 302
    agent.refresh_from_db()
    assert agent.status == AgentStatus.UNDEPLOYED


def test_a_failed_deployment_shows_why(actors, client_as):
    agent = remote_agent(actors, "Broken")
    Agent.objects.filter(pk=agent.pk).update(
        status=AgentStatus.FAILED, error="The remote endpoint cannot be reached <b>(refused)</b>."
    )
    html = client_as(actors.member).get(url(actors, "agent-detail", agent_slug=agent.slug)).content.decode()
    assert "Deployment failed." in html and "cannot be reached &lt;b&gt;(refused)&lt;/b&gt;" in html
    assert "Retry deployment" in html and "hx-trigger" not in html


def test_a_deploying_agent_page_polls_its_status(actors, client_as):
    agent = remote_agent(actors, "Loading")
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.DEPLOYING)
    html = client_as(actors.viewer).get(url(actors, "agent-detail", agent_slug=agent.slug)).content.decode()
    assert 'hx-trigger="every 1s"' in html and "?fragment=status" in html


def test_the_remote_api_key_is_write_only(actors, client_as):
    agent = remote_agent(actors, "Remote", remote_api_key="sk-very-secret", remote_model="llama-70b")
    client = client_as(actors.member)
    for page in ("agent-detail", "agent-edit"):
        html = client.get(url(actors, page, agent_slug=agent.slug)).content.decode()
        assert "sk-very-secret" not in html
    assert "A key is set" in client.get(url(actors, "agent-edit", agent_slug=agent.slug)).content.decode()
    data = {
        "name": "Remote",
        "backend": "remote",
        "model": "",
        "system_prompt": "",
        "temperature": "0.2",
        "top_p": "1",
        "max_tokens": "64",
        "context_length": "1024",
        "gpu_layers": "",
        "threads": "",
        "remote_url": "http://127.0.0.1:9/v1",
        "remote_model": "llama-70b",
        "remote_api_key": "",
    }
    assert client.post(url(actors, "agent-edit", agent_slug=agent.slug), data).status_code == 302
    agent.refresh_from_db()
    assert agent.remote_api_key == "sk-very-secret" and agent.temperature == 0.2  # blank keeps the key
    client.post(url(actors, "agent-edit", agent_slug=agent.slug), {**data, "remote_api_key": "sk-new"})
    agent.refresh_from_db()
    assert agent.remote_api_key == "sk-new"


def test_list_and_dashboard_show_agents_with_few_queries(actors, client_as):
    client = client_as(actors.viewer)
    remote_agent(actors, "First")

    def dashboard_queries():
        cache.clear()  # count the queries of building the content, not of serving it cached
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url(actors, "dashboard"))
        assert response.status_code == 200
        return len(queries), response.content.decode()

    dashboard_queries()  # the first request of a session does more (session, caches)
    one, html = dashboard_queries()
    assert "First" in html and "Not deployed" in html
    for i in range(5):
        remote_agent(actors, f"More {i}")
    more, html = dashboard_queries()
    assert more == one and "More 4" in html  # one query for the agents, however many
    listing = client.get(url(actors, "agent-list")).content.decode()
    assert "More 4" in listing and "New agent" not in listing  # a viewer reads, and is offered no writes


def test_viewer_reads_every_page_but_writes_nothing(actors, client_as):
    agent = remote_agent(actors, "Reader")
    endpoint = actions.do_create_endpoint(actors.project, actors.owner, name="Front door", baseline=agent)
    client = client_as(actors.viewer)
    for name, kwargs in (
        ("agent-list", {}),
        ("agent-create", {}),
        ("agent-detail", {"agent_slug": agent.slug}),
        ("agent-edit", {"agent_slug": agent.slug}),
        ("agent-audit", {"agent_slug": agent.slug}),
        ("endpoint-list", {}),
        ("endpoint-create", {}),
        ("endpoint-detail", {"endpoint_slug": endpoint.slug}),
    ):
        response = client.get(url(actors, name, **kwargs))
        assert response.status_code == 200, name
        html = response.content.decode()
        posting = [
            form
            for form in re.findall(r"<form[^>]*>", html)
            if 'method="post"' in form and "/accounts/logout/" not in form
        ]
        assert not posting, (name, posting)
    writes = [
        (
            url(actors, "agent-create"),
            {"name": "Nope", "project": actors.project.slug, "backend": "remote", "remote_url": "http://x/v1"},
        ),
        (url(actors, "agent-edit", agent_slug=agent.slug), {"name": "Renamed"}),
        (url(actors, "agent-action", agent_slug=agent.slug, action="deploy"), {}),
        (url(actors, "agent-action", agent_slug=agent.slug, action="delete"), {}),
        (url(actors, "agent-action", agent_slug=agent.slug, action="chat"), {}),
        (url(actors, "endpoint-create"), {"name": "Side door", "project": actors.project.slug, "baseline": agent.pk}),
        (url(actors, "endpoint-action", endpoint_slug=endpoint.slug, action="chat"), {}),
        (url(actors, "endpoint-action", endpoint_slug=endpoint.slug, action="delete"), {}),
    ]
    for target, data in writes:
        assert client.post(target, data).status_code == 403, target
    agent.refresh_from_db()
    assert agent.name == "Reader" and agent.status == AgentStatus.UNDEPLOYED
    assert Agent.objects.for_org(actors.org).count() == 1 and Endpoint.objects.for_org(actors.org).count() == 1
    assert not Conversation.objects.for_org(actors.org).exists()


def test_outsider_gets_404_on_every_page(actors, client_as):
    agent = remote_agent(actors, "Private")
    endpoint = actions.do_create_endpoint(actors.project, actors.owner, name="Private door", baseline=agent)
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=agent)
    answer = Message.objects.create(conversation=conversation, role="assistant", content="hi")
    blind = actions.do_start_conversation(actors.org, actors.member, endpoint=endpoint)
    client = client_as(actors.outsider)
    pages = [
        url(actors, "agent-list"),
        url(actors, "agent-create"),
        url(actors, "endpoint-list"),
        url(actors, "endpoint-create"),
        url(actors, "agent-detail", agent_slug=agent.slug),
        url(actors, "agent-edit", agent_slug=agent.slug),
        url(actors, "agent-audit", agent_slug=agent.slug),
        url(actors, "endpoint-detail", endpoint_slug=endpoint.slug),
        url(actors, "agent-conversation", agent_slug=agent.slug, conversation_id=conversation.pk),
        url(actors, "endpoint-conversation", endpoint_slug=endpoint.slug, conversation_id=blind.pk),
    ]
    for page in pages:
        assert client.get(page).status_code == 404, page
    posts = [
        url(actors, "agent-action", agent_slug=agent.slug, action="deploy"),
        url(actors, "endpoint-action", endpoint_slug=endpoint.slug, action="stop"),
        url(actors, "agent-feedback", agent_slug=agent.slug, conversation_id=conversation.pk, message_id=answer.pk),
        url(actors, "agent-conversation-delete", agent_slug=agent.slug, conversation_id=conversation.pk),
    ]
    for target in posts:
        assert client.post(target, {"rating": "1"}).status_code == 404, target
    assert Conversation.objects.for_org(actors.org).count() == 2 and not Feedback.objects.exists()


# --- chat -------------------------------------------------------------------------------------------


def conversation_with_answers(actors, agent, user=None):
    conversation = actions.do_start_conversation(actors.org, user or actors.member, agent=agent)
    Message.objects.create(conversation=conversation, role="user", content="Show me <b>bold</b> markup")
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="**Sure**: <script>alert(1)</script>",
        prompt_tokens=40,
        completion_tokens=12,
        ttft_ms=30,
        duration_ms=530,
        dropped_messages=3,
    )
    return conversation, answer


def test_the_chat_page_renders_the_conversation_server_side(actors, client_as):
    agent = remote_agent(actors, "Talker")
    conversation, answer = conversation_with_answers(actors, agent)
    other, _ = conversation_with_answers(actors, agent)
    Message.objects.create(conversation=conversation, role="assistant", content="old answer", superseded=True)
    page = url(actors, "agent-conversation", agent_slug=agent.slug, conversation_id=conversation.pk)
    html = client_as(actors.member).get(page).content.decode()
    # Escaped on the server; markdown.js renders it (escaping again) in the browser.
    assert (
        "Show me &lt;b&gt;bold&lt;/b&gt; markup" in html and "**Sure**: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    )
    assert "<script>alert(1)" not in html and "old answer" not in html
    assert "3 older messages were left out to fit the context window." in html
    assert "12 tokens" in html and "24.0 tokens/s" in html and "first token in 30 ms" in html
    assert f'data-socket-path="/ws/o/{actors.org.slug}/conversations/{conversation.pk}/"' in html
    assert 'data-can-write="true"' in html and "data-chat-form" in html and 'aria-label="Thumbs up"' in html
    # The sidebar lists this person's conversations with the agent.
    assert f"Conversation {other.pk}" in html and 'aria-current="page"' in html
    assert "Talker is not deployed" in html


def test_conversations_are_private_and_admins_read_them(actors, client_as, client):
    agent = remote_agent(actors, "Talker")
    conversation, answer = conversation_with_answers(actors, agent)
    page = url(actors, "agent-conversation", agent_slug=agent.slug, conversation_id=conversation.pk)
    # An admin reads it (read-only); a viewer does not find it; nor does anyone through another agent.
    admin_html = client_as(actors.admin).get(page).content.decode()
    assert "Read-only: this is bob's conversation." in admin_html and "data-chat-form" not in admin_html
    assert 'data-can-write="false"' in admin_html and "Thumbs up" not in admin_html
    assert (
        client_as(actors.admin)
        .post(
            url(actors, "agent-feedback", agent_slug=agent.slug, conversation_id=conversation.pk, message_id=answer.pk),
            {"rating": "1"},
        )
        .status_code
        == 403
    )
    assert (
        client_as(actors.admin)
        .post(url(actors, "agent-conversation-delete", agent_slug=agent.slug, conversation_id=conversation.pk))
        .status_code
        == 403
    )
    client.logout()
    assert client_as(actors.viewer).get(page).status_code == 404
    elsewhere = remote_agent(actors, "Elsewhere")
    assert (
        client_as(actors.member)
        .get(url(actors, "agent-conversation", agent_slug=elsewhere.slug, conversation_id=conversation.pk))
        .status_code
        == 404
    )
    # Its owner deletes it.
    owner = client_as(actors.member)
    deleted = owner.post(
        url(actors, "agent-conversation-delete", agent_slug=agent.slug, conversation_id=conversation.pk)
    )
    assert deleted["Location"] == url(actors, "agent-detail", agent_slug=agent.slug)
    assert not Conversation.objects.for_org(actors.org).filter(pk=conversation.pk).exists()


def test_feedback_is_given_with_htmx_and_shows_after_reload(actors, client_as):
    agent = remote_agent(actors, "Talker")
    conversation, answer = conversation_with_answers(actors, agent)
    client = client_as(actors.member)
    target = url(actors, "agent-feedback", agent_slug=agent.slug, conversation_id=conversation.pk, message_id=answer.pk)

    widget = client.post(target, {"rating": "1", "comment": "Clear and short."}, **HTMX)
    html = widget.content.decode()
    assert widget.status_code == 200 and html.startswith('<form class="feedback"') and "Thanks, saved." in html
    assert re.search(r'aria-label="Thumbs up"[^>]*aria-pressed="true"', html)
    assert re.search(r'aria-label="Thumbs down"[^>]*aria-pressed="false"', html)
    feedback = Feedback.objects.for_org(actors.org).get()
    assert (feedback.message_id, feedback.user_id, feedback.rating, feedback.comment) == (
        answer.pk,
        actors.member.pk,
        1,
        "Clear and short.",
    )

    # Changing one's mind updates the same row; the page shows the state after a reload.
    client.post(target, {"rating": "-1", "comment": "Actually wrong."}, **HTMX)
    page = client.get(
        url(actors, "agent-conversation", agent_slug=agent.slug, conversation_id=conversation.pk)
    ).content.decode()
    assert re.search(r'aria-label="Thumbs down"[^>]*aria-pressed="true"', page) and "Actually wrong." in page
    assert Feedback.objects.for_org(actors.org).get().rating == -1

    # Without htmx: back to the page. Bad input and user messages are refused.
    assert client.post(target, {"rating": "1"})["Location"].endswith(f"/conversations/{conversation.pk}/")
    bad = client.post(target, {"rating": "5"}, **HTMX).content.decode()
    assert "Choose thumbs up or thumbs down" in bad and Feedback.objects.for_org(actors.org).get().rating == 1
    question = conversation.messages.get(role="user")
    assert (
        client.post(
            url(
                actors, "agent-feedback", agent_slug=agent.slug, conversation_id=conversation.pk, message_id=question.pk
            ),
            {"rating": "1"},
        ).status_code
        == 404
    )
    assert client_as(actors.viewer).post(target, {"rating": "1"}).status_code == 403


# --- endpoints ---------------------------------------------------------------------------------------


def test_endpoint_forms_test_lifecycle_and_history(actors, client_as):
    baseline, candidate = remote_agent(actors, "Steady"), remote_agent(actors, "Bold")
    client = client_as(actors.member)
    assert client.get(url(actors, "endpoint-create")).status_code == 200
    same = client.post(
        url(actors, "endpoint-create"),
        {
            "name": "Front door",
            "project": actors.project.slug,
            "baseline": baseline.pk,
            "candidate": baseline.pk,
            "candidate_share": "0.5",
        },
    )
    assert same.status_code == 400 and "different agent" in same.content.decode()
    created = client.post(
        url(actors, "endpoint-create"),
        {
            "name": "Front door",
            "project": actors.project.slug,
            "baseline": baseline.pk,
            "candidate": "",
            "candidate_share": "0.5",
        },
    )
    endpoint = Endpoint.objects.for_org(actors.org).get()
    assert (
        created["Location"] == url(actors, "endpoint-detail", endpoint_slug="front-door") and endpoint.candidate is None
    )

    def act(action, **data):
        return client.post(url(actors, "endpoint-action", endpoint_slug=endpoint.slug, action=action), data)

    act("change", candidate=candidate.pk, candidate_share="0.25", note="try bold")
    endpoint.refresh_from_db()
    assert endpoint.candidate_id == candidate.pk and endpoint.candidate_share == 0.25 and endpoint.testing
    act("promote", note="bold wins")
    endpoint.refresh_from_db()
    assert endpoint.baseline_id == candidate.pk and endpoint.candidate is None and not endpoint.testing
    act("change", candidate=baseline.pk, candidate_share="0.5")
    act("stop", note="enough")
    endpoint.refresh_from_db()
    assert endpoint.candidate is None and endpoint.baseline_id == candidate.pk
    refused = act("stop")
    assert refused.status_code == 302
    html = client.get(url(actors, "endpoint-detail", endpoint_slug=endpoint.slug)).content.decode()
    assert "No test is running on this endpoint." in html  # the refusal, as a message
    assert [p.action for p in Promotion.objects.for_org(actors.org)] == ["stopped", "started", "promoted", "started"]
    for text in ("Test started", "Candidate promoted", "Test stopped", "try bold", "bold wins", "enough"):
        assert text in html, text
    assert "Chat through this endpoint" in html


def test_endpoint_results_per_variant(actors, client_as):
    baseline, candidate = remote_agent(actors, "Steady"), remote_agent(actors, "Bold")
    endpoint = actions.do_create_endpoint(
        actors.project, actors.owner, name="Front door", baseline=baseline, candidate=candidate, candidate_share=0.5
    )
    for i in range(12):
        conversation = actions.do_start_conversation(actors.org, actors.member, endpoint=endpoint)
        answer = Message.objects.create(conversation=conversation, role="assistant", content="ok")
        actions.do_record_inference(
            actors.org,
            agent=conversation.agent,
            source="chat",
            outcome="complete",
            user=actors.member,
            conversation=conversation,
            message=answer,
            endpoint=endpoint,
            variant=conversation.variant,
            ttft_ms=10 + i,
            latency_ms=100 + i,
        )
        actions.do_feedback(answer, actors.member, 1 if conversation.variant == "candidate" or i % 2 else -1)
    html = client_as(actors.viewer).get(url(actors, "endpoint-detail", endpoint_slug=endpoint.slug)).content.decode()
    counts = Conversation.objects.for_org(actors.org).filter(variant="candidate").count()
    assert 0 < counts < 12  # both variants drawn
    row = re.search(r'<tr data-variant="candidate">(.*?)</tr>', html, re.S).group(1)
    assert f"<td>{counts}</td>" in row and f"{counts} / 0" in row and "100 %" in row
    assert re.search(r'<tr data-variant="baseline">.*?%.*?\(\d+–\d+ %\)', html, re.S)


def test_chatting_through_an_endpoint_is_blind(actors, client_as):
    baseline = remote_agent(actors, "Alpha Agent", system_prompt="x")
    candidate = remote_agent(actors, "Omega Agent")
    endpoint = actions.do_create_endpoint(
        actors.project, actors.owner, name="Support desk", baseline=baseline, candidate=candidate, candidate_share=1.0
    )
    client = client_as(actors.member)
    started = client.post(url(actors, "endpoint-action", endpoint_slug=endpoint.slug, action="chat"))
    conversation = Conversation.objects.for_org(actors.org).get()
    assert conversation.agent_id == candidate.pk and conversation.variant == "candidate"
    page = url(actors, "endpoint-conversation", endpoint_slug=endpoint.slug, conversation_id=conversation.pk)
    assert started["Location"] == page
    Message.objects.create(conversation=conversation, role="user", content="hello")
    Message.objects.create(conversation=conversation, role="assistant", content="hi", completion_tokens=1)
    html = client.get(page).content.decode()
    assert "Support desk" in html
    for secret in (
        "Alpha Agent",
        "Omega Agent",
        baseline.slug,
        candidate.slug,
        "candidate",
        "baseline",
        "not deployed",
    ):
        assert secret.lower() not in html.lower(), secret
    # The conversation is not reachable through the agent that answers it, nor listed on its page.
    assert (
        client.get(
            url(actors, "agent-conversation", agent_slug=candidate.slug, conversation_id=conversation.pk)
        ).status_code
        == 404
    )
    assert (
        f"Conversation {conversation.pk}"
        not in client.get(url(actors, "agent-detail", agent_slug=candidate.slug)).content.decode()
    )
    # Feedback on a blind answer goes through the endpoint's route.
    answer = conversation.messages.get(role="assistant")
    widget = client.post(
        url(
            actors,
            "endpoint-feedback",
            endpoint_slug=endpoint.slug,
            conversation_id=conversation.pk,
            message_id=answer.pk,
        ),
        {"rating": "1"},
        **HTMX,
    )
    assert widget.status_code == 200 and Feedback.objects.for_org(actors.org).get().message_id == answer.pk


# --- audit -----------------------------------------------------------------------------------------


def test_audit_filters_counts_and_pages(actors, client_as):
    agent = remote_agent(actors, "Audited")
    other = remote_agent(actors, "Other")
    now = timezone.now()
    for i in range(55):
        actions.do_record_inference(
            actors.org,
            agent=agent,
            source="chat",
            outcome="complete",
            user=actors.member,
            prompt_tokens=10,
            completion_tokens=5,
            ttft_ms=20 + i,
            latency_ms=200 + i,
        )
    failed = actions.do_record_inference(
        actors.org,
        agent=agent,
        source="api",
        outcome="failed",
        user=actors.owner,
        latency_ms=5,
        error="llama.cpp ran out of <memory>",
    )
    old = actions.do_record_inference(
        actors.org, agent=agent, source="api", outcome="complete", user=actors.owner, latency_ms=7
    )
    InferenceRecord.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=10))
    actions.do_record_inference(actors.org, agent=other, source="chat", outcome="complete", user=actors.member)
    client = client_as(actors.viewer)
    audit = url(actors, "agent-audit", agent_slug=agent.slug)

    def count(html):
        return int(re.search(r'<strong data-field="count">(\d+)</strong>', html).group(1))

    html = client.get(audit).content.decode()
    assert count(html) == 57 and "Page 1 of 2" in html and html.count("<tr>") == 51  # header + 50 rows
    assert "out of &lt;memory&gt;" in html and "chat 55" in html and "api 2" in html
    page2 = client.get(audit + "?page=2").content.decode()
    assert page2.count("<tr>") == 1 + 7
    assert count(client.get(audit + "?outcome=failed").content.decode()) == 1
    assert count(client.get(audit + "?source=api").content.decode()) == 2
    by_owner = client.get(audit + f"?user={actors.owner.pk}&source=api").content.decode()
    assert count(by_owner) == 2
    since = (now - timedelta(days=2)).date().isoformat()
    filtered = client.get(audit + f"?source=api&since={since}").content.decode()
    assert count(filtered) == 1 and "Clear" in filtered
    # Pages keep the filters; a bad filter value is reported and left out.
    assert "source=chat&amp;page=2" in client.get(audit + "?source=chat").content.decode()
    bad = client.get(audit + "?since=yesterday&outcome=failed").content.decode()
    assert count(bad) == 1 and "Enter a valid date." in bad
    assert failed.agent_id == agent.pk
