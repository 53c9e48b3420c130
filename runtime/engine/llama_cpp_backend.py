"""In-process inference with llama-cpp-python.

:class:`ModelCache` keeps loaded models for the whole process under a memory budget: one load
per model whatever the number of chats using it, least-recently-used idle models evicted first.
Each loaded model serves one generation at a time (a llama.cpp context is not thread-safe);
requests wait in a first-come, first-served line (:class:`TurnQueue`) and see their position,
so no chat starves. :class:`LlamaCppBackend` runs one request on a cached model: it formats the
conversation with the model's own chat template, drops the oldest turns when the context is
full, reuses the KV cache of a saved conversation state (design document 000), samples token by
token and stops within one token when asked.
"""

from __future__ import annotations

import ctypes
import gc
import os
import queue as queue_module
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtime.engine.chat import (
    Cancelled,
    ChatRequest,
    ContextOverflow,
    Delta,
    Event,
    Finished,
    InferenceError,
    MemoryBudgetExceeded,
    ModelLoadError,
    Queued,
    Started,
    TextAssembler,
)

#: Used when a GGUF ships no chat template (ChatML, what most small instruct models use).
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter


def available_cpus() -> int:
    """Cores this process may use (llama-cpp-python itself defaults to far fewer)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class LoadSpec:
    """How to load one model file; two chats with equal specs share one loaded model."""

    path: str
    """The GGUF file."""
    n_ctx: int = 2048
    """Context window in tokens."""
    n_gpu_layers: int = 0
    """Layers offloaded to the GPU (0 on CPU-only builds)."""
    use_mmap: bool = True
    """Map the file instead of reading it into memory."""
    n_threads: int = 0
    """CPU threads; 0 means every available core."""
    estimated_bytes: int = 0
    """Memory the loaded model is expected to take (weights + KV cache + buffers); see :func:`estimate_memory`."""

    def __post_init__(self) -> None:
        if self.n_ctx < 16:
            raise ValueError(f"The context length must be at least 16 tokens, not {self.n_ctx}.")
        if self.n_gpu_layers < -1:
            raise ValueError("GPU layers must be -1 (all), 0 or a positive number.")
        if self.n_threads < 0:
            raise ValueError("Threads must be 0 (all cores) or a positive number.")


def estimate_memory(
    file_size: int,
    *,
    n_ctx: int,
    n_layers: int | None,
    n_embd: int | None,
    n_heads: int | None,
    n_heads_kv: int | None,
    n_vocab: int | None,
    n_batch: int = 512,
) -> int:
    """Bytes a loaded model takes: the weights, an f16 KV cache for ``n_ctx`` and the logits buffer.

    Unknown header facts count as zero; a 10 % margin covers llama.cpp's compute buffers.
    """
    kv = 0
    if n_layers and n_embd and n_heads:
        head_dim = n_embd // n_heads
        kv = n_ctx * n_layers * (n_heads_kv or n_heads) * head_dim * 2 * 2  # K and V, 2 bytes each
    logits = n_batch * (n_vocab or 0) * 4
    return int((file_size + kv + logits) * 1.1)


class TurnQueue:
    """First come, first served access to one model, with visible positions."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._line: list[object] = []

    def __len__(self) -> int:
        with self._cond:
            return len(self._line)

    def enter(self) -> object:
        ticket = object()
        with self._cond:
            self._line.append(ticket)
        return ticket

    def wait_turn(self, ticket: object, cancel: threading.Event) -> Iterator[int]:
        """Yield the position (1 = next) whenever it changes, until it is this ticket's turn."""
        last = None
        with self._cond:
            while self._line[0] is not ticket:
                position = self._line.index(ticket)
                if position != last:
                    last = position
                    self._cond.release()
                    try:
                        yield position
                    finally:
                        self._cond.acquire()
                    continue
                if cancel.is_set():
                    raise Cancelled
                self._cond.wait(timeout=0.1)

    def leave(self, ticket: object) -> None:
        with self._cond:
            if ticket in self._line:
                self._line.remove(ticket)
            self._cond.notify_all()


class LoadedModel:
    def __init__(self, spec: LoadSpec, llm: Llama) -> None:
        self.spec = spec
        self.llm = llm
        self.queue = TurnQueue()
        #: Every llama.cpp call on this model runs on this one thread. llama.cpp's CPU backend
        #: keeps an OpenMP thread team per calling thread, and an idle team spins for a while:
        #: answers computed on different threads took turns with each other's spinning teams and
        #: ran at half speed (measured with 4 concurrent chats on SmolLM2).
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="llama")
        self.users = 0
        self.loaded_at = time.time()
        self.last_used = time.time()
        self.formatter = _chat_formatter(llm)

    @property
    def busy(self) -> bool:
        return self.users > 0


def _chat_formatter(llm: Llama) -> Jinja2ChatFormatter:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template") or FALLBACK_CHAT_TEMPLATE
    model = llm._model
    eos = model.token_get_text(llm.token_eos()) if llm.token_eos() != -1 else ""
    bos = model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else ""
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)


def load_llama(spec: LoadSpec) -> Llama:
    """Load a GGUF with llama-cpp-python; :class:`ModelLoadError` says what went wrong."""
    from llama_cpp import Llama

    if not Path(spec.path).is_file():
        raise ModelLoadError(f"The model file {Path(spec.path).name} is missing on this server.")
    threads = spec.n_threads or available_cpus()
    try:
        return Llama(
            model_path=spec.path,
            n_ctx=spec.n_ctx,
            n_gpu_layers=spec.n_gpu_layers,
            use_mmap=spec.use_mmap,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=min(512, spec.n_ctx),
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as error:
        raise ModelLoadError(
            f"llama.cpp could not load {Path(spec.path).name} ({error}). The file may be corrupt, truncated, "
            "or of an architecture this llama.cpp build does not know; re-upload it or pick another model."
        ) from error


class ModelCache:
    """Process-wide loaded models under a memory budget (bytes)."""

    def __init__(self, budget_bytes: int, loader: Callable[[LoadSpec], Llama] = load_llama) -> None:
        self.budget_bytes = budget_bytes
        self._loader = loader
        self._lock = threading.Lock()
        self._models: OrderedDict[LoadSpec, LoadedModel] = OrderedDict()
        self._loading: dict[LoadSpec, threading.Lock] = {}
        self.loads = 0
        self.evictions = 0

    def used_bytes(self) -> int:
        with self._lock:
            return sum(m.spec.estimated_bytes for m in self._models.values())

    @staticmethod
    def _describe(spec: LoadSpec, model: LoadedModel) -> dict:
        return {
            "path": spec.path,
            "n_ctx": spec.n_ctx,
            "estimated_bytes": spec.estimated_bytes,
            "users": model.users,
            "queued": max(0, len(model.queue) - 1),
            "loaded_at": model.loaded_at,
            "last_used": model.last_used,
        }

    def snapshot(self) -> list[dict]:
        """What is loaded, for status pages."""
        with self._lock:
            return [self._describe(spec, m) for spec, m in self._models.items()]

    def entry(self, spec: LoadSpec) -> dict | None:
        """What :meth:`snapshot` says of ``spec``, or None when it is not loaded."""
        with self._lock:
            model = self._models.get(spec)
            return self._describe(spec, model) if model is not None else None

    def is_loaded(self, spec: LoadSpec) -> bool:
        return self.entry(spec) is not None

    @contextmanager
    def use(self, spec: LoadSpec) -> Iterator[LoadedModel]:
        """The loaded model for ``spec`` (loading it if needed), held against eviction while used."""
        model = self._acquire(spec)
        try:
            yield model
        finally:
            with self._lock:
                model.users -= 1
                model.last_used = time.time()

    def _acquire(self, spec: LoadSpec) -> LoadedModel:
        with self._lock:
            model = self._models.get(spec)
            if model is not None:
                model.users += 1
                self._models.move_to_end(spec)
                return model
            load_lock = self._loading.setdefault(spec, threading.Lock())
        with load_lock:  # one load per spec, however many requests ask at once
            with self._lock:
                model = self._models.get(spec)
                if model is not None:
                    model.users += 1
                    self._models.move_to_end(spec)
                    return model
                self._make_room(spec)
            llm = self._loader(spec)
            with self._lock:
                model = LoadedModel(spec, llm)
                model.users += 1
                self._models[spec] = model
                self.loads += 1
                self._loading.pop(spec, None)
                return model

    def _make_room(self, spec: LoadSpec) -> None:
        """Evict idle models, least recently used first, until ``spec`` fits. Holds ``_lock``."""
        if spec.estimated_bytes > self.budget_bytes:
            raise MemoryBudgetExceeded(
                f"This model needs about {_gib(spec.estimated_bytes)} with a {spec.n_ctx}-token context, more than the "
                f"runtime's memory budget of {_gib(self.budget_bytes)}. Lower the context length, or raise "
                "AGENT_MEMORY_BUDGET_MB."
            )
        used = sum(m.spec.estimated_bytes for m in self._models.values())
        for other_spec in list(self._models):
            if used + spec.estimated_bytes <= self.budget_bytes:
                break
            other = self._models[other_spec]
            if other.busy:
                continue
            del self._models[other_spec]
            used -= other_spec.estimated_bytes
            other.llm.close() if hasattr(other.llm, "close") else None
            other.llm = None
            other.thread.shutdown(wait=False)
            self.evictions += 1
        gc.collect()
        if used + spec.estimated_bytes > self.budget_bytes:
            raise MemoryBudgetExceeded(
                f"The runtime's memory budget ({_gib(self.budget_bytes)}) is taken by models that are answering "
                "right now; try again when they finish, or raise AGENT_MEMORY_BUDGET_MB."
            )

    def evict(self, path: str) -> int:
        """Unload every idle copy of a model file (when an agent is undeployed); returns how many."""
        with self._lock:
            victims = [s for s, m in self._models.items() if s.path == path and not m.busy]
            for spec in victims:
                model = self._models.pop(spec)
                model.llm.close() if hasattr(model.llm, "close") else None
                model.llm = None
                model.thread.shutdown(wait=False)
                self.evictions += 1
        gc.collect()
        return len(victims)


_DONE = object()


def _on_thread(
    executor: ThreadPoolExecutor, make_events: Callable[[], Iterator[Event]], cancel: threading.Event
) -> Iterator[Event]:
    """Iterate ``make_events()`` on ``executor``'s thread, yielding its events here.

    Leaving early sets ``cancel`` and waits for the thread to finish, so the model is never used
    by two requests at once.
    """
    handoff: queue_module.SimpleQueue = queue_module.SimpleQueue()

    def run() -> None:
        try:
            for event in make_events():
                handoff.put(event)
        except BaseException as error:  # noqa: BLE001 - raised on the caller's side
            handoff.put(error)
        finally:
            handoff.put(_DONE)

    future = executor.submit(run)
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not future.done():
            cancel.set()
            future.result()


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _context_size(llm: Llama) -> int:
    """The usable context: llama.cpp may round its own up (to 256), the Python side keeps what was asked."""
    return min(llm.n_ctx(), len(llm.input_ids))


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LlamaCppBackend:
    """One agent's view of a cached model: see the module docstring."""

    #: Conversations shorter than this are cheap to re-read; their state is not saved.
    session_min_tokens = 256

    def __init__(self, cache: ModelCache, spec: LoadSpec) -> None:
        self.cache = cache
        self.spec = spec

    def warm_up(self) -> None:
        """Load the model now (deployment), raising ModelLoadError/MemoryBudgetExceeded."""
        with self.cache.use(self.spec):
            pass

    def count_tokens(self, text: str) -> int:
        with self.cache.use(self.spec) as model:
            return len(model.llm.tokenize(text.encode(), add_bos=False, special=True))

    def stream(self, request: ChatRequest, cancel: threading.Event) -> Iterator[Event]:
        started = time.perf_counter()
        with self.cache.use(self.spec) as model:
            ticket = model.queue.enter()
            try:
                try:
                    for position in model.queue.wait_turn(ticket, cancel):
                        yield Queued(position)
                except Cancelled:
                    yield Finished("cancelled", 0, 0, 0.0, time.perf_counter() - started)
                    return
                yield from _on_thread(model.thread, lambda: self._generate(model, request, cancel, started), cancel)
            finally:
                model.queue.leave(ticket)

    # -- one request, with the model to itself -------------------------------------------

    def _prompt_tokens(self, model: LoadedModel, messages: list[dict]) -> list[int]:
        result = model.formatter(messages=messages)
        return model.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def _fit(self, model: LoadedModel, request: ChatRequest) -> tuple[list[int], int]:
        """Prompt tokens that fit the context, and how many old messages were dropped for it."""
        n_ctx = _context_size(model.llm)
        messages = list(request.messages)
        system = [m for m in messages[:1] if m["role"] == "system"]
        rest = messages[len(system) :]
        room = n_ctx - min(request.settings.max_tokens, n_ctx // 2) if request.truncate else n_ctx - 1
        dropped = 0
        while True:
            tokens = self._prompt_tokens(model, system + rest)
            if len(tokens) <= room:
                return tokens, dropped
            if not request.truncate or len(rest) <= 1:
                raise ContextOverflow(
                    f"The prompt is {len(tokens)} tokens but this model's context window is {n_ctx} tokens"
                    + (f" (with {request.settings.max_tokens} kept for the answer)" if request.truncate else "")
                    + ". Shorten the message or the system prompt, or deploy with a longer context."
                )
            # Drop the oldest turn: a user message and the answers that followed it.
            rest.pop(0)
            dropped += 1
            while len(rest) > 1 and rest[0]["role"] == "assistant":
                rest.pop(0)
                dropped += 1

    def _restore_session(self, model: LoadedModel, path: Path, prompt: list[int]) -> None:
        """Load the conversation's saved KV state if it covers more of the prompt than memory does."""
        import llama_cpp

        llm = model.llm
        tokens_file = path.with_suffix(".tokens.npy")
        if not path.is_file() or not tokens_file.is_file():
            return
        try:
            saved = np.load(tokens_file, allow_pickle=False)
        except (OSError, ValueError):
            return
        in_memory = _common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt)
        from_saved = _common_prefix(saved.tolist(), prompt)
        if from_saved <= in_memory + 16:
            return
        capacity = _context_size(llm)
        out = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        ok = llama_cpp.llama_state_load_file(llm.ctx, str(path).encode(), out, capacity, ctypes.byref(count))
        if not ok or count.value != len(saved):
            llm.reset()
            llm._ctx.kv_cache_clear()
            path.unlink(missing_ok=True)
            return
        llm.input_ids[: count.value] = np.asarray(out[: count.value], dtype=np.intc)
        llm.n_tokens = count.value
        llm._requires_eval = True

    def _save_session(self, model: LoadedModel, path: Path) -> None:
        import llama_cpp

        llm = model.llm
        n = llm.n_tokens
        if n < self.session_min_tokens:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tokens = llm.input_ids[:n].astype(np.intc)
        tmp = path.with_suffix(".part")
        array = (llama_cpp.llama_token * n)(*tokens.tolist())
        if not llama_cpp.llama_state_save_file(llm.ctx, str(tmp).encode(), array, n):
            tmp.unlink(missing_ok=True)
            return
        np.save(path.with_suffix(".tokens.tmp.npy"), tokens, allow_pickle=False)
        os.replace(tmp, path)
        os.replace(path.with_suffix(".tokens.tmp.npy"), path.with_suffix(".tokens.npy"))

    def _generate(
        self, model: LoadedModel, request: ChatRequest, cancel: threading.Event, started: float
    ) -> Iterator[Event]:
        import llama_cpp

        llm = model.llm
        settings = request.settings
        prompt, dropped = self._fit(model, request)
        session = Path(request.session_path) if request.session_path else None
        if session is not None:
            self._restore_session(model, session, prompt)
        reused = _common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt)
        yield Started(len(prompt), dropped, reused)
        if cancel.is_set():
            yield Finished("cancelled", len(prompt), 0, 0.0, time.perf_counter() - started)
            return
        if settings.seed is not None:
            llm.set_seed(settings.seed)
        assembler = TextAssembler(settings.stop)
        vocab = llm._model.vocab
        n_ctx = _context_size(llm)
        completion: list[int] = []
        pending_tokens = 0
        first_token_at = None
        reason = "length"
        generator = llm.generate(
            prompt, temp=settings.temperature, top_p=settings.top_p, top_k=40, min_p=0.05, repeat_penalty=1.0
        )
        try:
            for token in generator:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = "stop"
                    break
                piece = llm.detokenize([token], prev_tokens=prompt + completion)
                completion.append(token)
                pending_tokens += 1
                text = assembler.feed(piece)
                if text:
                    yield Delta(text, pending_tokens)
                    pending_tokens = 0
                if assembler.stopped:
                    reason = "stop"
                    break
                if cancel.is_set():
                    reason = "cancelled"
                    break
                if len(completion) >= settings.max_tokens or llm.n_tokens + 1 >= n_ctx:
                    reason = "length"
                    break
        except (RuntimeError, ValueError) as error:
            raise InferenceError(f"llama.cpp stopped with an error while generating: {error}") from error
        finally:
            generator.close()
        tail = assembler.flush() if reason != "cancelled" else ""
        if tail or pending_tokens:
            yield Delta(tail, pending_tokens)
        now = time.perf_counter()
        ttft = (first_token_at or now) - started
        yield Finished(reason, len(prompt), len(completion), ttft, now - started)
        if session is not None and reason != "cancelled":
            try:
                self._save_session(model, session)
            except OSError:
                pass  # a lost state file costs one re-read of the history, nothing more
