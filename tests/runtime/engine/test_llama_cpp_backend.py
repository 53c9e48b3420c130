"""The inference engine alone (no Django): real llama.cpp on tiny GGUF models built here."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime.engine.chat import (
    ChatRequest,
    ContextOverflow,
    Delta,
    Finished,
    GenerationSettings,
    MemoryBudgetExceeded,
    ModelLoadError,
    Queued,
    Started,
    TextAssembler,
)
from runtime.engine.hardware import auto_gpu_layers
from runtime.engine.llama_cpp_backend import LlamaCppBackend, LoadSpec, ModelCache, estimate_memory, load_llama
from tests.support.tiny_models import TinyLlamaConfig, write_gguf_llama

MiB = 2**20


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return str(write_gguf_llama(tmp_path_factory.mktemp("engine") / "tiny.gguf", TinyLlamaConfig(context_length=512)))


@pytest.fixture(scope="module")
def other_gguf(tmp_path_factory):
    return str(
        write_gguf_llama(tmp_path_factory.mktemp("engine2") / "tiny2.gguf", TinyLlamaConfig(context_length=512), seed=3)
    )


def run(backend, request, cancel=None):
    events = list(backend.stream(request, cancel or threading.Event()))
    text = "".join(e.text for e in events if isinstance(e, Delta))
    return events, text


def ask(content, **settings):
    settings.setdefault("temperature", 0.0)
    return ChatRequest([{"role": "user", "content": content}], GenerationSettings(**settings))


class CountingLoader:
    def __init__(self):
        self.loads = []

    def __call__(self, spec):
        self.loads.append(spec.path)
        return load_llama(spec)


def test_an_answer_streams_with_counts_and_timings(gguf):
    backend = LlamaCppBackend(ModelCache(512 * MiB), LoadSpec(gguf, n_ctx=256))
    events, text = run(backend, ask("Hello", max_tokens=16))
    assert isinstance(events[0], Started) and events[0].prompt_tokens > 0
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason in ("length", "stop")
    deltas = [e for e in events if isinstance(e, Delta)]
    assert sum(d.n_tokens for d in deltas) == finished.completion_tokens <= 16
    assert 0 < finished.ttft_s <= finished.total_s
    # Greedy decoding is deterministic: the same question, the same answer.
    assert run(backend, ask("Hello", max_tokens=16))[1] == text


def test_concurrent_chats_share_one_load_and_each_get_their_own_answer(gguf):
    loader = CountingLoader()
    cache = ModelCache(512 * MiB, loader=loader)
    spec = LoadSpec(gguf, n_ctx=256)
    questions = [f"Question number {i}" for i in range(6)]
    expected = {q: run(LlamaCppBackend(ModelCache(512 * MiB), spec), ask(q, max_tokens=12))[1] for q in questions}

    def chat(question):
        return question, run(LlamaCppBackend(cache, spec), ask(question, max_tokens=12))

    with ThreadPoolExecutor(len(questions)) as pool:
        results = list(pool.map(chat, questions))
    assert loader.loads == [gguf]  # loaded once for six chats
    for question, (events, text) in results:
        assert text == expected[question]  # nothing mixed between conversations
        assert isinstance(events[-1], Finished)
    # Some waited their turn, and were told their place in line.
    assert any(isinstance(e, Queued) for _, (events, _) in results for e in events)


def test_the_line_is_first_come_first_served():
    from runtime.engine.llama_cpp_backend import TurnQueue

    queue, order, cancel = TurnQueue(), [], threading.Event()
    first = queue.enter()
    tickets = [queue.enter() for _ in range(3)]
    positions = {i: [] for i in range(3)}

    def wait(i):
        for position in queue.wait_turn(tickets[i], cancel):
            positions[i].append(position)
        order.append(i)
        time.sleep(0.02)
        queue.leave(tickets[i])

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    queue.leave(first)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2]
    assert positions[2][0] == 3 and positions[2][-1] == 1  # it saw its place move up


def test_a_cancelled_wait_leaves_the_line(gguf):
    cache = ModelCache(512 * MiB)
    spec = LoadSpec(gguf, n_ctx=256)
    release = threading.Event()
    with cache.use(spec) as model:
        holder = model.queue.enter()  # someone is answering
        cancel = threading.Event()
        events = []

        def waiting():
            events.extend(LlamaCppBackend(cache, spec).stream(ask("hi"), cancel))
            release.set()

        thread = threading.Thread(target=waiting)
        thread.start()
        time.sleep(0.3)
        cancel.set()
        assert release.wait(5)
        model.queue.leave(holder)
    assert isinstance(events[0], Queued) and events[-1].reason == "cancelled"
    assert len(model.queue) == 0


def test_stop_ends_the_answer_early(gguf):
    backend = LlamaCppBackend(ModelCache(512 * MiB), LoadSpec(gguf, n_ctx=512))
    cancel = threading.Event()
    events = []
    for event in backend.stream(ask("Go on", max_tokens=400), cancel):
        events.append(event)
        if isinstance(event, Delta) and sum(e.n_tokens for e in events if isinstance(e, Delta)) >= 5:
            cancel.set()
    finished = events[-1]
    # Generation runs ahead of the reader on the model's own thread, so a few more tokens may
    # already be made when the stop is seen; it still ends long before max_tokens.
    assert finished.reason == "cancelled" and 5 <= finished.completion_tokens < 100


def test_idle_models_are_evicted_least_recently_used_first(gguf, other_gguf, tmp_path):
    third = str(write_gguf_llama(tmp_path / "third.gguf", TinyLlamaConfig(context_length=512), seed=5))
    loader = CountingLoader()
    cache = ModelCache(100 * MiB, loader=loader)
    specs = [LoadSpec(path, n_ctx=128, estimated_bytes=40 * MiB) for path in (gguf, other_gguf, third)]
    for spec in specs[:2]:
        run(LlamaCppBackend(cache, spec), ask("hi", max_tokens=2))
    run(LlamaCppBackend(cache, specs[0]), ask("hi", max_tokens=2))  # the first is now the most recent
    run(LlamaCppBackend(cache, specs[2]), ask("hi", max_tokens=2))  # 120 MiB > 100: evict one
    assert cache.evictions == 1
    assert cache.is_loaded(specs[0]) and cache.is_loaded(specs[2]) and not cache.is_loaded(specs[1])
    assert cache.used_bytes() <= cache.budget_bytes


def test_a_busy_model_is_never_evicted_and_an_oversized_one_is_refused(gguf, other_gguf):
    cache = ModelCache(100 * MiB)
    busy = LoadSpec(gguf, n_ctx=128, estimated_bytes=70 * MiB)
    with cache.use(busy):
        with pytest.raises(MemoryBudgetExceeded, match="answering right now"):
            with cache.use(LoadSpec(other_gguf, n_ctx=128, estimated_bytes=70 * MiB)):
                pass
        assert cache.is_loaded(busy)
    with pytest.raises(MemoryBudgetExceeded, match="more than the runtime's memory budget"):
        with cache.use(LoadSpec(other_gguf, n_ctx=128, estimated_bytes=200 * MiB)):
            pass


def test_a_file_llama_cpp_cannot_load_gives_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 100)
    backend = LlamaCppBackend(ModelCache(512 * MiB), LoadSpec(str(bad), n_ctx=128))
    with pytest.raises(ModelLoadError, match="could not load broken.gguf"):
        backend.warm_up()
    with pytest.raises(ModelLoadError, match="missing"):
        LlamaCppBackend(ModelCache(512 * MiB), LoadSpec(str(tmp_path / "gone.gguf"))).warm_up()


def test_a_full_context_drops_the_oldest_turns_but_keeps_the_system_prompt(gguf):
    backend = LlamaCppBackend(ModelCache(512 * MiB), LoadSpec(gguf, n_ctx=128))
    history = [{"role": "system", "content": "Be brief."}]
    for i in range(12):
        history += [
            {"role": "user", "content": f"question {i} " * 3},
            {"role": "assistant", "content": f"answer {i} " * 3},
        ]
    history.append({"role": "user", "content": "last question"})
    events, _ = run(backend, ChatRequest(history, GenerationSettings(max_tokens=16, temperature=0)))
    started = events[0]
    assert started.dropped_messages > 0 and started.dropped_messages % 2 == 0  # whole turns
    assert started.prompt_tokens <= 128 - 16
    # The API asks for no truncation: the same conversation is refused, with the numbers.
    with pytest.raises(ContextOverflow, match="context window is 128 tokens"):
        run(backend, ChatRequest(history, GenerationSettings(max_tokens=16), truncate=False))
    with pytest.raises(ContextOverflow):
        run(backend, ChatRequest([{"role": "user", "content": "word " * 400}], GenerationSettings(max_tokens=16)))


def test_a_saved_state_spares_re_reading_the_conversation(gguf, tmp_path):
    cache = ModelCache(512 * MiB)
    backend = LlamaCppBackend(cache, LoadSpec(gguf, n_ctx=512))
    backend.session_min_tokens = 32
    session = str(tmp_path / "conversation.state")
    history = [{"role": "user", "content": "tell me about the weather " * 8}]
    events, answer = run(
        backend, ChatRequest(history, GenerationSettings(max_tokens=8, temperature=0), session_path=session)
    )
    assert (tmp_path / "conversation.state").is_file()
    # Another conversation uses the model in between: its KV cache no longer holds ours.
    run(backend, ask("something else entirely", max_tokens=4))
    follow_up = history + [{"role": "assistant", "content": answer}, {"role": "user", "content": "and tomorrow?"}]
    events, resumed = run(
        backend, ChatRequest(follow_up, GenerationSettings(max_tokens=8, temperature=0), session_path=session)
    )
    assert events[0].reused_tokens >= events[0].prompt_tokens // 2
    # Without the state the same prompt is read from scratch, and the answer is the same.
    run(backend, ask("something else entirely", max_tokens=4))
    events, fresh = run(backend, ChatRequest(follow_up, GenerationSettings(max_tokens=8, temperature=0)))
    assert events[0].reused_tokens < 8
    assert fresh == resumed


def test_stop_strings_are_cut_even_across_pieces():
    assembler = TextAssembler(("STOP",))
    shown = assembler.feed(b"Hello ST") + assembler.feed(b"OP and more")
    assert shown == "Hello " and assembler.stopped
    assembler = TextAssembler(("STOP",))
    assert assembler.feed(b"ST") == "" and assembler.feed(b"AR") == "STAR"
    # A character split across tokens is shown whole.
    assembler = TextAssembler()
    snowman = "☃".encode()
    assert assembler.feed(snowman[:1]) == "" and assembler.feed(snowman[1:]) == "☃"


def test_settings_are_validated():
    with pytest.raises(ValueError, match="temperature"):
        GenerationSettings(temperature=3)
    with pytest.raises(ValueError, match="top_p"):
        GenerationSettings(top_p=0)
    with pytest.raises(ValueError, match="max_tokens"):
        GenerationSettings(max_tokens=0)
    with pytest.raises(ValueError, match="role"):
        ChatRequest([{"role": "wizard", "content": "x"}])
    with pytest.raises(ValueError, match="context length"):
        LoadSpec("x.gguf", n_ctx=4)


def test_memory_estimate_and_automatic_gpu_layers():
    # SmolLM2-135M's shape with a 2,048-token context: weights + 45 MiB of f16 KV cache + logits.
    estimate = estimate_memory(100 * MiB, n_ctx=2048, n_layers=30, n_embd=576, n_heads=9, n_heads_kv=3, n_vocab=49152)
    kv = 2048 * 30 * 3 * 64 * 2 * 2
    assert estimate == int((100 * MiB + kv + 512 * 49152 * 4) * 1.1)
    assert auto_gpu_layers(1000, 30, None, True) == 0  # no GPU
    assert auto_gpu_layers(1000, 30, 10**9, False) == 0  # llama.cpp built without GPU support
    assert auto_gpu_layers(31 * 100, 30, 10**9, True) == -1  # everything fits
    assert auto_gpu_layers(31 * 100, 30, 1000, True) == 9  # 900 bytes usable / 100 per layer
