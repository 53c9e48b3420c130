"""The glue between agents (rows) and inference backends (runtime/engine), in this process.

The web process holds one :class:`~runtime.engine.llama_cpp_backend.ModelCache` for all agents;
:func:`backend_for` builds the backend an agent answers with; :func:`astream` runs a backend in a
worker thread and hands its events to the event loop, so generation never blocks it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections

from runtime.engine.chat import ChatBackend, ChatRequest, Delta, Event, InferenceError
from runtime.engine.hardware import auto_gpu_layers, free_vram_bytes, gpu_offload_supported
from runtime.engine.llama_cpp_backend import LlamaCppBackend, LoadSpec, ModelCache, estimate_memory
from runtime.engine.remote import RemoteBackend, RemoteSpec

if TYPE_CHECKING:
    from runtime.models import Agent

logger = logging.getLogger(__name__)

_cache: ModelCache | None = None
_cache_lock = threading.Lock()
#: Generation threads: one per request being answered or waiting in a model's line.
_executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="inference")


def model_cache() -> ModelCache:
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ModelCache(settings.AGENT_MEMORY_BUDGET_MB * 2**20)
        return _cache


def reset_model_cache(budget_mb: int | None = None) -> ModelCache:
    """A fresh, empty cache (tests; a changed budget)."""
    global _cache
    with _cache_lock:
        _cache = ModelCache((budget_mb or settings.AGENT_MEMORY_BUDGET_MB) * 2**20)
        return _cache


def load_spec(agent: Agent, *, decide_gpu: bool = False) -> LoadSpec:
    """How this agent's model is loaded. Touches the database: call it from sync code.

    ``decide_gpu`` works automatic GPU layers out afresh (a deployment) instead of reusing the
    number the last deployment recorded.
    """
    from projects.actions.teachers import model_path

    model = agent.model
    if model is None or model.format != "gguf":
        raise InferenceError("This agent has no GGUF model; chat runs GGUF models with llama.cpp.")
    meta = model.metadata or {}
    path = model_path(model)
    n_layers = meta.get("block_count")
    gpu_layers = agent.gpu_layers
    if gpu_layers is None:
        # "Automatic" is decided once, when the agent is deployed (warm_up records it): asked again
        # per request, the free VRAM would shrink by the loaded model itself, give another spec and
        # load a second copy.
        recorded = agent.deployment or {}
        gpu_layers = recorded.get("gpu_layers") if recorded.get("gpu_layers_auto") and not decide_gpu else None
    if gpu_layers is None:
        gpu_layers = auto_gpu_layers(model.size_bytes, n_layers, free_vram_bytes(), gpu_offload_supported())
    return LoadSpec(
        path=str(path),
        n_ctx=agent.context_length,
        n_gpu_layers=gpu_layers,
        use_mmap=agent.use_mmap,
        n_threads=agent.threads or 0,
        estimated_bytes=estimate_memory(
            model.size_bytes,
            n_ctx=agent.context_length,
            n_layers=n_layers,
            n_embd=meta.get("embedding_length"),
            n_heads=meta.get("head_count"),
            n_heads_kv=meta.get("head_count_kv"),
            n_vocab=meta.get("vocab_size"),
        ),
    )


def backend_for(agent: Agent) -> ChatBackend:
    """The backend this agent answers with. Touches the database: call it from sync code."""
    if agent.backend == "remote":
        return RemoteBackend(
            RemoteSpec(
                agent.remote_url,
                agent.remote_model or agent.slug,
                agent.remote_api_key,
                timeout=settings.REMOTE_BACKEND_TIMEOUT,
            )
        )
    return LlamaCppBackend(model_cache(), load_spec(agent))


def loaded_entry(agent: Agent) -> dict | None:
    """What the model cache says of this agent's model (see ``ModelCache.snapshot``), or None when not loaded."""
    if agent.backend != "llama_cpp" or agent.model_id is None:
        return None
    try:
        return model_cache().entry(load_spec(agent))
    except (InferenceError, ValueError, StopIteration, OSError):
        return None


def is_loaded(agent: Agent) -> bool:
    return loaded_entry(agent) is not None


def session_path(conversation_id: int, agent: Agent) -> str:
    """Where the conversation's saved llama.cpp state lives (one per conversation and model)."""
    return str(
        settings.AGENT_STATE_DIR
        / f"conversation-{conversation_id}-model-{agent.model_id}-ctx-{agent.context_length}.state"
    )


_END = object()
#: Streamed text reaches the event loop at most this often (seconds).
FLUSH_EVERY_S = 0.025


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def astream(backend: ChatBackend, request: ChatRequest, cancel: threading.Event) -> AsyncIterator[Event]:
    """The backend's events, produced in a worker thread. Leaving early (or being cancelled) sets ``cancel``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (server shutting down)
            cancel.set()

    def run() -> None:
        # Text is handed over at most every FLUSH_EVERY_S (the first piece at once): waking the
        # event loop for every token would take CPU from llama.cpp's threads, which spin on
        # barriers and slow down for every core they lose.
        pending: Delta | None = None
        last_flush = 0.0
        try:
            for event in backend.stream(request, cancel):
                if isinstance(event, Delta):
                    pending = (
                        event
                        if pending is None
                        else Delta(pending.text + event.text, pending.n_tokens + event.n_tokens)
                    )
                    now = time.monotonic()
                    if now - last_flush < FLUSH_EVERY_S:
                        continue
                    last_flush = now
                    event, pending = pending, None
                elif pending is not None:
                    put(pending)
                    pending = None
                put(event)
            if pending is not None:
                put(pending)
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting side
            if pending is not None:
                put(pending)
            put(_Failure(error))
        finally:
            close_old_connections()
            put(_END)

    future = loop.run_in_executor(_executor, run)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        if not future.done():
            cancel.set()
            await asyncio.shield(future)


def warm_up(agent: Agent) -> dict:
    """Load (llama.cpp) or reach (remote) the agent's model now; facts for the agent page."""
    import urllib.request

    started = time.perf_counter()
    if agent.backend == "remote":
        request = urllib.request.Request(
            agent.remote_url.rstrip("/") + "/models",
            headers={"Authorization": f"Bearer {agent.remote_api_key}"} if agent.remote_api_key else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=min(settings.REMOTE_BACKEND_TIMEOUT, 15)) as response:
                response.read(1_000_000)
        except OSError as error:
            raise InferenceError(
                f"The remote endpoint {agent.remote_url} cannot be reached ({error}). Check the URL, the key and that "
                "the server runs."
            ) from error
        return {"backend": "remote", "reached_in_s": round(time.perf_counter() - started, 3)}
    spec = load_spec(agent, decide_gpu=True)
    LlamaCppBackend(model_cache(), spec).warm_up()
    return {
        "backend": "llama_cpp",
        "load_s": round(time.perf_counter() - started, 3),
        "gpu_layers": spec.n_gpu_layers,
        "gpu_layers_auto": agent.gpu_layers is None,
        "threads": spec.n_threads or None,
        "estimated_bytes": spec.estimated_bytes,
        "context_length": spec.n_ctx,
        "use_mmap": spec.use_mmap,
    }


def start_in_background(function: Callable[..., object], *args) -> None:
    """Run ``function(*args)`` in an inference thread (deployments), closing its DB connection after."""

    def run():
        try:
            function(*args)
        except Exception:  # noqa: BLE001
            logger.exception("background runtime task failed")
        finally:
            close_old_connections()

    _executor.submit(run)
