"""Writing one answer of a conversation: stream it to the browser and keep it, whatever happens.

The answer row exists (status "streaming") before the first token; its text is saved as it grows
(at most every :data:`SAVE_EVERY_S` seconds: a saved row per token would take CPU from generation)
and it ends complete, stopped, interrupted or failed,
with its token counts and timings and an audit row. A dropped connection or a server stop never
loses what was written: the text saved so far stays, and a stale "streaming" answer is reaped as
interrupted (``actions.reap_stale_answers``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async

from runtime import actions, serving
from runtime.engine.chat import ChatRequest, Delta, Finished, GenerationSettings, InferenceError, Queued, Started
from runtime.models import Message, MessageStatus

logger = logging.getLogger(__name__)

SAVE_EVERY_S = 1.0

Send = Callable[[dict], Awaitable[None]]


def _prepare(answer_id: int):
    answer = Message.objects.select_related(
        "conversation__agent__model", "conversation__organization", "conversation__endpoint", "conversation__user"
    ).get(pk=answer_id)
    conversation = answer.conversation
    agent = conversation.agent
    messages = actions.prompt_messages(conversation, agent, before=answer)
    backend = serving.backend_for(agent)
    session = serving.session_path(conversation.pk, agent) if agent.backend == "llama_cpp" else None
    request = ChatRequest(
        messages,
        GenerationSettings(temperature=agent.temperature, top_p=agent.top_p, max_tokens=agent.max_tokens),
        truncate=True,
        session_path=session,
    )
    return answer, backend, request


async def write_answer(
    answer_id: int, send: Send, cancel: threading.Event, disconnected: Callable[[], bool]
) -> Message:
    """Generate the answer ``answer_id`` (already stored, streaming), sending events through ``send``."""
    loop = asyncio.get_running_loop()
    text: list[str] = []
    stats = {"prompt_tokens": 0, "completion_tokens": 0, "ttft_ms": None, "duration_ms": None, "dropped_messages": 0}
    status, error = MessageStatus.FAILED, ""
    answer = None
    try:
        answer, backend, request = await database_sync_to_async(_prepare)(answer_id)
        last_save = loop.time()
        async for event in serving.astream(backend, request, cancel):
            if isinstance(event, Delta):
                text.append(event.text)
                stats["completion_tokens"] += event.n_tokens
                await send({"type": "delta", "id": answer_id, "text": event.text, "tokens": event.n_tokens})
                if loop.time() - last_save > SAVE_EVERY_S:
                    last_save = loop.time()
                    await database_sync_to_async(actions.do_save_partial)(answer_id, "".join(text))
            elif isinstance(event, Queued):
                await send({"type": "queued", "id": answer_id, "position": event.position})
            elif isinstance(event, Started):
                stats["prompt_tokens"], stats["dropped_messages"] = event.prompt_tokens, event.dropped_messages
                await send(
                    {
                        "type": "started",
                        "id": answer_id,
                        "prompt_tokens": event.prompt_tokens,
                        "dropped_messages": event.dropped_messages,
                    }
                )
            elif isinstance(event, Finished):
                stats.update(
                    prompt_tokens=event.prompt_tokens or stats["prompt_tokens"],
                    completion_tokens=event.completion_tokens or stats["completion_tokens"],
                    ttft_ms=int(event.ttft_s * 1000),
                    duration_ms=int(event.total_s * 1000),
                )
                if event.reason == "cancelled":
                    status = MessageStatus.INTERRUPTED if disconnected() else MessageStatus.STOPPED
                else:
                    status = MessageStatus.COMPLETE
    except InferenceError as failure:
        status, error = MessageStatus.FAILED, str(failure)
    except asyncio.CancelledError:
        status = MessageStatus.INTERRUPTED
        cancel.set()
        raise
    except Exception as failure:  # noqa: BLE001 - the answer must still end in a final state
        logger.exception("answer %s failed", answer_id)
        status, error = (
            MessageStatus.FAILED,
            f"Generation failed unexpectedly ({type(failure).__name__}); see the server log.",
        )
    finally:
        if answer is None:
            answer = await database_sync_to_async(Message.objects.select_related("conversation__agent").get)(
                pk=answer_id
            )
        finished = await asyncio.shield(
            database_sync_to_async(actions.do_finish_answer)(
                answer, status=status, content="".join(text), error=error, **stats
            )
        )
    await send({"type": "end", "message": finished.as_event()})
    return finished
