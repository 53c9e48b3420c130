"""Chat over a websocket: /ws/o/<org_slug>/conversations/<id>/.

Client to server (JSON):
    {"type": "send", "content": "..."}     a new user message; the answer streams back
    {"type": "stop"}                       stop the answer being written (kept, marked stopped)
    {"type": "regenerate"}                 set the last answer aside and write a new one
    {"type": "ping"}
Server to client: "snapshot" (the conversation on connect), "message" (a stored user message),
"answer" (a new, empty answer), "queued", "started", "delta", "end" (the stored answer), "error", "pong".

Only the conversation's owner may write into it; admins may watch. Closing the socket while an
answer streams stops generation and keeps the text so far, marked interrupted.
"""

from __future__ import annotations

import asyncio
import json
import threading

from channels.db import database_sync_to_async

from projects.actions import ActionError
from projects.consumers.base import OrgConsumer
from projects.models import Role
from runtime import actions
from runtime.chat import write_answer
from runtime.models import Conversation


class ChatConsumer(OrgConsumer):
    conversation: Conversation

    async def org_connect(self):
        self.task: asyncio.Task | None = None
        self.cancel = threading.Event()
        self.closed = False
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.conversation = await database_sync_to_async(self._find)(conversation_id)
        if self.conversation is None:
            return False
        self.can_write = self.conversation.user_id == self.membership.user_id and self.membership.has_role(Role.MEMBER)
        return None

    def _find(self, conversation_id: int) -> Conversation | None:
        return (
            Conversation.objects.visible_to(self.membership)
            .select_related("agent", "endpoint")
            .filter(pk=conversation_id)
            .first()
        )

    def _snapshot(self) -> dict:
        actions.reap_stale_answers(self.conversation)
        messages = self.conversation.messages.filter(superseded=False)
        return {
            "type": "snapshot",
            "conversation": self.conversation.pk,
            "can_write": self.can_write,
            "messages": [m.as_event() for m in messages],
        }

    async def websocket_connect(self, message):
        await super().websocket_connect(message)
        if getattr(self, "conversation", None) is not None and not self.closed:
            await self.send_json(await database_sync_to_async(self._snapshot)())

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_json(
                {"type": "error", "message": 'Send JSON objects such as {"type": "send", "content": "Hello"}.'}
            )
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        kind = content["type"]
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "stop":
            if self.task is not None and not self.task.done():
                self.cancel.set()
        elif kind in ("send", "regenerate"):
            await self._start(kind, content)
        else:
            await self.send_json(
                {"type": "error", "message": f"Unknown message type {kind!r}: use send, stop, regenerate or ping."}
            )

    async def _start(self, kind: str, content: dict) -> None:
        if not self.can_write:
            await self.send_json(
                {"type": "error", "message": "Only the person who started this conversation can write in it."}
            )
            return
        if self.task is not None and not self.task.done():
            await self.send_json({"type": "error", "message": "An answer is still being written; stop it or wait."})
            return
        try:
            if kind == "send":
                user_message, answer = await database_sync_to_async(actions.do_post_message)(
                    self.conversation, content.get("content")
                )
                await self.send_json({"type": "message", "message": user_message.as_event()})
            else:
                answer = await database_sync_to_async(actions.do_regenerate)(self.conversation)
        except ActionError as error:
            await self.send_json({"type": "error", "message": error.message})
            return
        await self.send_json({"type": "answer", "message": answer.as_event()})
        self.cancel = threading.Event()
        self.task = asyncio.create_task(write_answer(answer.pk, self._send_safely, self.cancel, lambda: self.closed))

    async def _send_safely(self, event: dict) -> None:
        if self.closed:
            return
        try:
            await self.send_json(event)
        except Exception:  # noqa: BLE001 - the socket went away; the answer is still being kept
            self.closed = True
            self.cancel.set()

    async def disconnect(self, code):
        self.closed = True
        if getattr(self, "task", None) is not None and not self.task.done():
            self.cancel.set()
            try:
                await asyncio.wait_for(asyncio.shield(self.task), timeout=30)
            except (TimeoutError, Exception):  # noqa: BLE001 - the task records its own outcome
                pass
