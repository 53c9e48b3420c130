"""REST API of the runtime: agents, endpoints (A/B tests), conversations and feedback, the inference audit.

Tenant isolation and the viewer's read-only role on every route are proven by
tests/projects/test_tenancy_routes.py; these tests cover what each route does.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from runtime import actions
from runtime.models import Agent, Conversation, Endpoint, Feedback, InferenceRecord, Message, PromotionAction


def base(actors, org=None) -> str:
    return f"/api/v1/orgs/{(org or actors.org).slug}"


def remote_agent(actors, name="Far", **fields) -> Agent:
    return actions.do_create_agent(
        actors.project, actors.owner, name=name, backend="remote", remote_url="http://gpu-host:8080/v1", **fields
    )


def test_agents_are_created_edited_deployed_and_deleted(actors, api_as, chat_model):
    api = api_as(actors.member)
    url = f"{base(actors)}/agents/"
    response = api.post(
        url,
        {
            "project": actors.project.slug,
            "name": "Triage nurse",
            "model": chat_model.pk,
            "system_prompt": "Be brief.",
            "context_length": 256,
            "max_tokens": 16,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    agent = response.json()
    assert (agent["slug"], agent["status"], agent["model"], agent["project"]) == (
        "triage-nurse",
        "undeployed",
        chat_model.pk,
        actors.project.slug,
    )
    assert agent["created_by"] == actors.member.username and agent["has_remote_api_key"] is False
    detail = f"{url}{agent['id']}/"
    assert [a["slug"] for a in api.get(url, {"project": actors.project.slug}).json()["results"]] == ["triage-nurse"]
    assert api.get(url, {"status": "live"}).json()["results"] == []

    # Edits go through the same rules as the pages.
    assert api.patch(detail, {"temperature": 0.2, "name": "Nurse"}, format="json").json()["temperature"] == 0.2
    response = api.patch(detail, {"temperature": 5}, format="json")
    assert response.status_code == 400 and "temperature" in response.json()["error"]["fields"]
    response = api.patch(detail, {"context_length": 4096}, format="json")
    assert response.status_code == 400 and "trained for 512 tokens" in response.json()["error"]["message"]
    assert api.patch(detail, {"slug": "renamed"}, format="json").json()["slug"] == "triage-nurse"  # the API name stays
    assert api.put(detail, {"name": "x"}, format="json").status_code == 405

    # Deploying loads the model in the background: deploying, then live.
    response = api.post(f"{detail}deploy/")
    assert response.status_code == 202 and response.json()["status"] == "deploying"
    deadline = time.monotonic() + 30
    while api.get(detail).json()["status"] == "deploying" and time.monotonic() < deadline:
        time.sleep(0.05)
    shown = api.get(detail).json()
    assert shown["status"] == "live", shown["error"]
    assert shown["deployment"]["backend"] == "llama_cpp" and shown["deployed_at"]
    assert api.post(f"{detail}undeploy/").json()["status"] == "undeployed"
    assert api.delete(detail).status_code == 204
    assert not Agent.objects.filter(pk=agent["id"]).exists()


def test_agent_input_is_checked_and_foreign_objects_are_not_found(actors, api_as, chat_model, tiny_gguf):
    api = api_as(actors.member)
    url = f"{base(actors)}/agents/"
    cases = [
        ({"project": actors.project.slug}, 400, "name"),
        ({"project": actors.project.slug, "name": "No model"}, 400, "model"),
        ({"project": actors.other_project.slug, "name": "X", "model": chat_model.pk}, 404, "project"),
        ({"project": actors.project.slug, "name": "X", "backend": "remote"}, 400, "remote_url"),
        ({"project": actors.project.slug, "name": "X", "backend": "carrier-pigeon"}, 400, "backend"),
        ({"project": actors.project.slug, "name": "X", "model": chat_model.pk, "top_p": 0}, 400, "top_p"),
    ]
    for body, status, field in cases:
        response = api.post(url, body, format="json")
        assert response.status_code == status, (body, response.json())
        assert field in response.json()["error"]["fields"], (body, response.json())
    # Charlie's model cannot be named from Alice's organisation.
    from projects.actions.teachers import do_import_model_files

    theirs = do_import_model_files(tiny_gguf, actors.other_project, actors.outsider, name="theirs")
    response = api.post(url, {"project": actors.project.slug, "name": "X", "model": theirs.pk}, format="json")
    assert response.status_code == 404 and response.json()["error"]["fields"] == {
        "model": ["No such model in this organisation."]
    }
    # One name per organisation, shared with endpoints.
    assert (
        api.post(
            url, {"project": actors.project.slug, "name": "Twin", "model": chat_model.pk}, format="json"
        ).status_code
        == 201
    )
    response = api.post(url, {"project": actors.project.slug, "name": "Twin", "model": chat_model.pk}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "duplicate"
    assert not Agent.objects.filter(organization=actors.org).exclude(slug="twin").exists()


def test_the_remote_api_key_is_written_never_read(actors, api_as, db):
    api = api_as(actors.member)
    url = f"{base(actors)}/agents/"
    response = api.post(
        url,
        {
            "project": actors.project.slug,
            "name": "Far",
            "backend": "remote",
            "remote_url": "http://gpu-host:8080/v1",
            "remote_model": "llama-3-8b",
            "remote_api_key": "sk-very-secret",
        },
        format="json",
    )
    assert response.status_code == 201
    agent = response.json()
    assert agent["has_remote_api_key"] is True and agent["model"] is None and agent["backend"] == "remote"
    detail = f"{url}{agent['id']}/"
    for shown in (response, api.get(url), api.get(detail), api.patch(detail, {"remote_model": "other"}, format="json")):
        assert "sk-very-secret" not in json.dumps(shown.json()) and '"remote_api_key"' not in json.dumps(shown.json())
    api.patch(detail, {"remote_api_key": ""}, format="json")  # blank keeps it
    assert Agent.objects.get(pk=agent["id"]).remote_api_key == "sk-very-secret"
    api.patch(detail, {"remote_api_key": "sk-new"}, format="json")
    assert Agent.objects.get(pk=agent["id"]).remote_api_key == "sk-new"


def test_endpoints_run_tests_promote_and_keep_their_history(actors, api_as, db):
    baseline, candidate, third = (remote_agent(actors, name) for name in ("Baseline", "Candidate", "Third"))
    api = api_as(actors.member)
    url = f"{base(actors)}/endpoints/"
    response = api.post(
        url,
        {
            "project": actors.project.slug,
            "name": "Support",
            "baseline": baseline.pk,
            "candidate": candidate.pk,
            "candidate_share": 0.25,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    endpoint = response.json()
    assert endpoint["slug"] == "support" and endpoint["testing"] is True and endpoint["candidate_share"] == 0.25
    assert endpoint["baseline"]["slug"] == "baseline" and endpoint["candidate"]["slug"] == "candidate"
    assert set(endpoint["ab_results"]) == {"baseline", "candidate"}
    assert [h["action"] for h in endpoint["history"]] == ["started"]
    detail = f"{url}{endpoint['id']}/"
    assert "ab_results" not in api.get(url).json()["results"][0]  # the list stays cheap

    changed = api.post(
        f"{detail}change_test/", {"candidate": third.pk, "candidate_share": 0.5, "note": "try the third"}, format="json"
    ).json()
    assert changed["candidate"]["slug"] == "third" and changed["history"][0]["note"] == "try the third"
    promoted = api.post(f"{detail}promote/", {"note": "better"}, format="json").json()
    assert promoted["baseline"]["slug"] == "third" and promoted["candidate"] is None and promoted["status"] == "stopped"
    assert [h["action"] for h in api.get(detail).json()["history"]] == [
        PromotionAction.PROMOTED,
        PromotionAction.CHANGED,
        PromotionAction.STARTED,
    ]
    assert api.get(detail).json()["history"][0]["by"] == actors.member.username
    response = api.post(f"{detail}stop/", {}, format="json")
    assert response.status_code == 409 and "No test is running" in response.json()["error"]["message"]
    response = api.post(f"{detail}promote/", {}, format="json")
    assert response.status_code == 409

    # An agent an endpoint uses cannot be deleted; the endpoint can.
    response = api.delete(f"{base(actors)}/agents/{third.pk}/")
    assert response.status_code == 409 and "Support" in response.json()["error"]["message"]
    assert api.delete(detail).status_code == 204
    assert api.delete(f"{base(actors)}/agents/{third.pk}/").status_code == 204


def test_endpoint_input_is_checked(actors, api_as, db):
    baseline = remote_agent(actors, "Baseline")
    theirs = Agent.objects.create(
        organization=actors.other_org,
        project=actors.other_project,
        name="Theirs",
        slug="theirs",
        backend="remote",
        remote_url="http://x/v1",
    )
    api = api_as(actors.member)
    url = f"{base(actors)}/endpoints/"
    cases = [
        ({"project": actors.project.slug, "name": "E", "baseline": theirs.pk}, 404, "baseline"),
        (
            {"project": actors.project.slug, "name": "E", "baseline": baseline.pk, "candidate": theirs.pk},
            404,
            "candidate",
        ),
        (
            {"project": actors.project.slug, "name": "E", "baseline": baseline.pk, "candidate": baseline.pk},
            400,
            "candidate",
        ),
        (
            {"project": actors.project.slug, "name": "E", "baseline": baseline.pk, "candidate_share": 1.5},
            400,
            "candidate_share",
        ),
        ({"project": actors.project.slug, "name": "Baseline", "baseline": baseline.pk}, 409, "slug"),
    ]
    for body, status, field in cases:
        response = api.post(url, body, format="json")
        assert response.status_code == status, (body, response.json())
        assert field in response.json()["error"]["fields"], (body, response.json())
    assert not Endpoint.objects.exists()


@pytest.fixture
def chats(actors, db):
    """A conversation of Bob (member) with one answer, and one of Alice (owner)."""
    agent = remote_agent(actors, "Helper")
    mine = actions.do_start_conversation(actors.org, actors.member, agent=agent)
    question = Message.objects.create(conversation=mine, role="user", content="How are you?")
    answer = Message.objects.create(conversation=mine, role="assistant", content="Fine.", agent=agent)
    theirs = actions.do_start_conversation(actors.org, actors.owner, agent=agent)
    return mine, question, answer, theirs


def test_conversations_are_private_to_their_owner_and_admins(actors, api_as, chats):
    mine, question, answer, theirs = chats
    url = f"{base(actors)}/conversations/"
    listed = {
        role: [c["id"] for c in api_as(actors.user(role)).get(url).json()["results"]]
        for role in ("member", "admin", "viewer", "owner")
    }
    assert listed == {"member": [mine.pk], "admin": [theirs.pk, mine.pk], "viewer": [], "owner": [theirs.pk, mine.pk]}
    shown = api_as(actors.member).get(f"{url}{mine.pk}/").json()
    assert [(m["role"], m["content"]) for m in shown["messages"]] == [("user", "How are you?"), ("assistant", "Fine.")]
    assert shown["agent"]["slug"] == "helper" and shown["user"] == actors.member.username
    assert api_as(actors.member).get(f"{url}{theirs.pk}/").status_code == 404
    assert api_as(actors.admin).get(f"{url}{mine.pk}/").status_code == 200
    assert api_as(actors.member).get(url, {"agent": "helper"}).json()["count"] == 1
    assert api_as(actors.member).get(url, {"agent": "nobody"}).json()["count"] == 0
    # Deleting: one's own conversation only; an admin reads others' but does not delete them.
    assert api_as(actors.member).delete(f"{url}{theirs.pk}/").status_code == 404
    response = api_as(actors.admin).delete(f"{url}{mine.pk}/")
    assert response.status_code == 403 and "Only the person" in response.json()["error"]["message"]
    assert api_as(actors.member).delete(f"{url}{mine.pk}/").status_code == 204
    assert not Conversation.objects.filter(pk=mine.pk).exists() and Conversation.objects.filter(pk=theirs.pk).exists()


def test_an_endpoints_conversation_does_not_tell_which_agent_answers(actors, api_as, db):
    baseline, candidate = remote_agent(actors, "Baseline"), remote_agent(actors, "Candidate")
    endpoint = actions.do_create_endpoint(
        actors.project, actors.owner, name="Support", baseline=baseline, candidate=candidate, candidate_share=1.0
    )
    conversation = actions.do_start_conversation(actors.org, actors.member, endpoint=endpoint)
    assert conversation.agent_id == candidate.pk
    Message.objects.create(conversation=conversation, role="assistant", content="Hi", agent=candidate)
    url = f"{base(actors)}/conversations/"
    for role in ("member", "admin"):
        listed = api_as(actors.user(role)).get(url).json()["results"]
        shown = api_as(actors.user(role)).get(f"{url}{conversation.pk}/").json()
        for data in (listed[0], shown):
            assert data["endpoint"]["slug"] == "support" and data["agent"] is None and "variant" not in data
        assert "candidate" not in json.dumps(shown)
    # Filtering by agent finds conversations held with that agent directly, never through an endpoint.
    assert api_as(actors.member).get(url, {"agent": "candidate"}).json()["count"] == 0
    assert api_as(actors.member).get(url, {"endpoint": "support"}).json()["count"] == 1


def test_feedback_on_an_answer(actors, api_as, chats):
    mine, question, answer, theirs = chats
    url = f"{base(actors)}/conversations/{mine.pk}/feedback/"
    api = api_as(actors.member)
    response = api.post(url, {"message": answer.pk, "rating": -1, "comment": "Too short"}, format="json")
    assert (
        response.status_code == 200
        and response.json()["rating"] == -1
        and response.json()["user"] == actors.member.username
    )
    api.post(url, {"message": answer.pk, "rating": 1}, format="json")  # rating again replaces it
    assert list(Feedback.objects.values_list("rating", "comment")) == [(1, "")]
    shown = api.get(f"{base(actors)}/conversations/{mine.pk}/").json()
    assert shown["messages"][1]["feedback"][0]["rating"] == 1
    # What is refused, and how.
    response = api.post(url, {"message": question.pk, "rating": 1}, format="json")
    assert response.status_code == 409 and "answers" in response.json()["error"]["message"]
    response = api.post(url, {"message": answer.pk, "rating": 3}, format="json")
    assert response.status_code == 400 and "rating" in response.json()["error"]["fields"]
    other_answer = Message.objects.create(conversation=theirs, role="assistant", content="Hm.")
    assert api.post(url, {"message": other_answer.pk, "rating": 1}, format="json").status_code == 404
    assert (
        api_as(actors.member)
        .post(
            f"{base(actors)}/conversations/{theirs.pk}/feedback/",
            {"message": other_answer.pk, "rating": 1},
            format="json",
        )
        .status_code
        == 404
    )
    superseded = Message.objects.create(conversation=mine, role="assistant", content="Old.", superseded=True)
    assert api.post(url, {"message": superseded.pk, "rating": 1}, format="json").status_code == 404
    # Only the person who had the conversation rates it: an admin reads it, but does not rate it.
    response = api_as(actors.admin).post(url, {"message": answer.pk, "rating": -1}, format="json")
    assert response.status_code == 403 and "rates its answers" in response.json()["error"]["message"]
    assert Feedback.objects.count() == 1


def test_the_audit_is_filtered_and_summarised(actors, api_as, chats):
    mine, question, answer, theirs = chats
    agent = mine.agent
    other = remote_agent(actors, "Other")
    now = timezone.now()
    rows = [  # (agent, source, outcome, latency, age in days)
        (agent, "chat", "complete", 100, 0),
        (agent, "api", "complete", 200, 0),
        (agent, "api", "failed", 10, 0),
        (other, "api", "interrupted", 300, 3),
    ]
    for row_agent, source, outcome, latency, age in rows:
        record = actions.do_record_inference(
            actors.org,
            agent=row_agent,
            source=source,
            outcome=outcome,
            user=actors.member,
            latency_ms=latency,
            ttft_ms=latency // 2,
            prompt_tokens=5,
            completion_tokens=7,
        )
        InferenceRecord.objects.filter(pk=record.pk).update(created_at=now - timedelta(days=age))
    actions.do_record_inference(actors.other_org, agent=None, source="api", outcome="complete")  # Charlie's: never seen
    api = api_as(actors.viewer)  # viewers read the audit
    url = f"{base(actors)}/inferences/"
    assert api.get(url).json()["count"] == 4
    first = api.get(url).json()["results"][0]
    assert first["agent"]["slug"] == "helper" and first["user"] == actors.member.username and first["token"] is None
    counts = {
        (("agent", "helper"),): 3,
        (("agent", "other"),): 1,
        (("source", "api"),): 3,
        (("outcome", "failed"),): 1,
        (("since", (now - timedelta(days=1)).isoformat()),): 3,
        (("until", (now - timedelta(days=2)).date().isoformat()),): 1,
        (("source", "api"), ("agent", "helper")): 2,
        (("user", actors.member.username),): 4,
    }
    for query, expected in counts.items():
        assert api.get(url, dict(query)).json()["count"] == expected, query
    summary = api.get(f"{url}summary/", {"agent": "helper"}).json()
    assert summary["count"] == 3 and summary["by_source"] == {"api": 2, "chat": 1}
    assert summary["by_outcome"] == {"complete": 2, "failed": 1} and summary["tokens_out"] == 21
    assert summary["latency_ms"]["p50"] == 100 and summary["latency_ms"]["p99"] == 200
    response = api.get(url, {"since": "last tuesday"})
    assert response.status_code == 400 and "since" in response.json()["error"]["fields"]
    assert api.get(f"{url}summary/", {"since": "2025-13-45"}).status_code == 400
    # The audit is written by the platform only.
    assert api_as(actors.owner).post(url, {}, format="json").status_code == 405
    assert api_as(actors.owner).delete(f"{url}{first['id']}/").status_code == 405
