"""Chat over the websocket with the real llama.cpp on a tiny model."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from runtime import actions
from runtime.models import InferenceRecord, Message, MessageStatus
from runtime.routing import websocket_urlpatterns


def socket(actors, conversation_id, user, org=None):
    communicator = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns), f"/ws/o/{(org or actors.org).slug}/conversations/{conversation_id}/"
    )
    communicator.scope["user"] = user
    return communicator


async def until(communicator, kind, timeout=30):
    seen = []
    while True:
        try:
            event = await communicator.receive_json_from(timeout=timeout)
        except Exception:
            raise AssertionError(f"no {kind!r} event; saw {seen}") from None
        seen.append(event)
        if event["type"] == kind:
            return event, seen


def test_an_answer_streams_and_is_kept(actors, live_agent):
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=live_agent)

    async def talk():
        ws = socket(actors, conversation.pk, actors.member)
        assert (await ws.connect())[0]
        snapshot = await ws.receive_json_from()
        assert snapshot["type"] == "snapshot" and snapshot["messages"] == [] and snapshot["can_write"]
        await ws.send_json_to({"type": "send", "content": "Hello there"})
        end, seen = await until(ws, "end")
        await ws.disconnect()
        return end, seen

    end, seen = async_to_sync(talk)()
    kinds = [e["type"] for e in seen]
    assert kinds[:3] == ["message", "answer", "started"]
    deltas = [e["text"] for e in seen if e["type"] == "delta"]
    assert len(deltas) >= 2  # streamed piece by piece, not in one go
    answer = end["message"]
    assert answer["status"] == "complete" and answer["content"] == "".join(deltas)
    assert answer["completion_tokens"] > 0 and answer["prompt_tokens"] > 0 and answer["ttft_ms"] is not None
    stored = list(
        Message.objects.for_org(actors.org).filter(conversation=conversation).values_list("role", "status", "content")
    )
    assert stored == [("user", "complete", "Hello there"), ("assistant", "complete", answer["content"])]
    record = InferenceRecord.objects.for_org(actors.org).get()
    assert (record.agent_id, record.user_id, record.source, record.outcome) == (
        live_agent.pk,
        actors.member.pk,
        "chat",
        "complete",
    )
    assert record.completion_tokens == answer["completion_tokens"] and record.model_id == live_agent.model_id


def test_stop_ends_the_answer_promptly_and_keeps_it(actors, chat_model):
    from tests.runtime.conftest import make_agent

    agent = make_agent(actors, chat_model, max_tokens=200, context_length=512)
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=agent)

    async def talk():
        ws = socket(actors, conversation.pk, actors.member)
        await ws.connect()
        await ws.receive_json_from()
        await ws.send_json_to({"type": "send", "content": "Tell me a long story"})
        await until(ws, "delta")
        await ws.send_json_to({"type": "stop"})
        end, _ = await until(ws, "end")
        await ws.disconnect()
        return end["message"]

    answer = async_to_sync(talk)()
    assert answer["status"] == "stopped"
    assert 0 < answer["completion_tokens"] < 200
    assert Message.objects.for_org(actors.org).get(pk=answer["id"]).status == MessageStatus.STOPPED


def test_a_dropped_socket_keeps_the_message_and_the_partial_answer(actors, chat_model):
    from tests.runtime.conftest import make_agent

    agent = make_agent(actors, chat_model, max_tokens=400, context_length=512)
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=agent)

    async def talk():
        ws = socket(actors, conversation.pk, actors.member)
        await ws.connect()
        await ws.receive_json_from()
        await ws.send_json_to({"type": "send", "content": "Please keep talking"})
        await until(ws, "delta")
        await ws.disconnect()  # the tab closes mid-answer

    async_to_sync(talk)()
    user_message, answer = Message.objects.for_org(actors.org).filter(conversation=conversation)
    assert user_message.content == "Please keep talking"
    assert answer.status == MessageStatus.INTERRUPTED and answer.content and answer.completion_tokens < 400

    # Reopening the conversation shows both.
    async def reopen():
        ws = socket(actors, conversation.pk, actors.member)
        await ws.connect()
        snapshot = await ws.receive_json_from()
        await ws.disconnect()
        return snapshot

    snapshot = async_to_sync(reopen)()
    assert [m["status"] for m in snapshot["messages"]] == ["complete", "interrupted"]
    assert snapshot["messages"][1]["content"] == answer.content


def test_bad_input_over_the_socket_gets_clear_errors_and_changes_nothing(actors, live_agent, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=live_agent)

    async def talk():
        ws = socket(actors, conversation.pk, actors.member)
        await ws.connect()
        await ws.receive_json_from()
        replies = []
        for payload in (
            "not json at all",
            '["a list"]',
            '{"type": "dance"}',
            '{"type": "send", "content": ""}',
            '{"type": "send", "content": "' + "x" * 101 + '"}',
            '{"type": "send", "content": 42}',
            '{"type": "regenerate"}',
        ):
            await ws.send_to(text_data=payload)
            replies.append(await ws.receive_json_from())
        await ws.disconnect()
        return replies

    replies = async_to_sync(talk)()
    assert all(r["type"] == "error" for r in replies), replies
    messages = [r["message"] for r in replies]
    assert "JSON" in messages[0] and "JSON" in messages[1] and "dance" in messages[2]
    assert "empty" in messages[3] and "limit is 100" in messages[4] and "text" in messages[5]
    assert "no answer" in messages[6]
    assert not Message.objects.for_org(actors.org).exists()


def test_an_undeployed_agent_does_not_answer(actors, live_agent):
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=live_agent)
    actions.do_undeploy_agent(live_agent)

    async def talk():
        ws = socket(actors, conversation.pk, actors.member)
        await ws.connect()
        await ws.receive_json_from()
        await ws.send_json_to({"type": "send", "content": "Hello"})
        reply = await ws.receive_json_from()
        await ws.disconnect()
        return reply

    reply = async_to_sync(talk)()
    assert reply["type"] == "error" and "not deployed" in reply["message"]
    assert not Message.objects.for_org(actors.org).exists()


def test_regenerate_keeps_the_old_answer_aside(actors, live_agent):
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=live_agent)

    async def talk():
        ws = socket(actors, conversation.pk, actors.member)
        await ws.connect()
        await ws.receive_json_from()
        await ws.send_json_to({"type": "send", "content": "Hi"})
        await until(ws, "end")
        await ws.send_json_to({"type": "regenerate"})
        end, _ = await until(ws, "end")
        await ws.disconnect()
        return end["message"]

    second = async_to_sync(talk)()
    answers = list(
        Message.objects.for_org(actors.org).filter(conversation=conversation, role="assistant").order_by("id")
    )
    assert [a.superseded for a in answers] == [True, False] and answers[1].pk == second["id"]
    assert InferenceRecord.objects.for_org(actors.org).count() == 2


def test_only_the_owner_writes_and_outsiders_cannot_connect(actors, live_agent):
    conversation = actions.do_start_conversation(actors.org, actors.member, agent=live_agent)

    async def attempt(user, org):
        ws = socket(actors, conversation.pk, user, org=org)
        connected, code = await ws.connect()
        first = await ws.receive_json_from() if connected else None
        reply = None
        if connected:
            await ws.send_json_to({"type": "send", "content": "let me in"})
            reply = await ws.receive_json_from()
        await ws.disconnect()
        return connected, code, first, reply

    # An outsider: refused like a 404, both through their own organisation's URL and through ours.
    assert async_to_sync(attempt)(actors.outsider, actors.org)[:2] == (False, 4404)
    assert async_to_sync(attempt)(actors.outsider, actors.other_org)[:2] == (False, 4404)
    # Another member of the same organisation does not see someone else's conversation.
    assert async_to_sync(attempt)(actors.viewer, actors.org)[:2] == (False, 4404)
    # An admin may watch it but not write into it.
    connected, _, first, reply = async_to_sync(attempt)(actors.admin, actors.org)
    assert connected and first["can_write"] is False and reply["type"] == "error"
    assert not Message.objects.for_org(actors.org).exists()
