"""Chat benchmark on the SmolLM2 teacher: the platform's paths against llama-cpp-python alone.

Measures, in one run on one machine:

- decode tokens/s and time to first token (TTFT) of the same greedy answers through
  (a) llama-cpp-python directly in this process (``Llama.create_chat_completion(stream=True)``),
  (b) the websocket chat path (``/ws/o/<org>/conversations/<id>/``) and
  (c) the OpenAI-compatible API (``/v1/chat/completions``, stream, official ``openai`` client);
  goals: decode ≥ 0.97× direct, TTFT overhead ≤ 30 ms;
- 8 concurrent websocket conversations: aggregate tokens/s, and that every answer arrives whole,
  in its own conversation, identical to the answer the same question gets alone (greedy);
- resuming a ~1,500-token conversation with its saved llama.cpp state against reading it again.

The server runs as ``make run`` runs it (scripts/run.sh: one uvicorn process), with DEBUG=0, a
private Redis, SQLite and a temporary data directory; its agent uses every core, as does the
direct run. Direct and server runs take turns, never overlap. JSON on stdout and in
``bench/results/chat.json``.

    .venv/bin/python bench/chat.py [--answers 5] [--max-tokens 96] [--out bench/results/chat.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import describe  # noqa: E402
from _processes import free_port, start_redis, stop, wait_for  # noqa: E402

from hartonomous_web.server_command import uvicorn_command  # noqa: E402

GOAL_DECODE_RATIO = 0.97
GOAL_TTFT_OVERHEAD_MS = 30.0
CONTEXT = 2048
QUESTIONS = [
    "What are the symptoms of type 2 diabetes?",
    "How is high blood pressure treated?",
    "What causes asthma attacks?",
    "What is the difference between a virus and a bacterium?",
    "How can I lower my cholesterol?",
    "What are the early signs of a stroke?",
    "Why is sleep important for health?",
    "What does the thyroid gland do?",
    "How do vaccines work?",
    "What is anemia?",
]


def log(*parts) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


# --- inside Django (a subprocess: `chat.py _seed '{...}'`) ---------------------------------------


def _seed(payload: dict) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from projects import actions as project_actions
    from projects.actions.teachers import do_import_model_files
    from projects.management.commands.bootstrap_demo import demo_teacher_path
    from runtime import actions
    from runtime.models import Agent, AgentStatus, Message

    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
    org = project_actions.do_create_organization(user, "Bench")
    project = project_actions.do_create_project(org, user, "Chat")
    model = do_import_model_files(Path(demo_teacher_path()), project, user, name="SmolLM2")
    agent = actions.do_create_agent(
        project,
        user,
        name="Smol",
        model=model,
        context_length=CONTEXT,
        max_tokens=payload["max_tokens"],
        temperature=0.0,
    )
    Agent.objects.for_org(org).filter(pk=agent.pk).update(status=AgentStatus.LIVE)  # the server loads it on first use
    _, token = project_actions.do_create_token(org, user, "bench")
    session = SessionStore()
    session[SESSION_KEY], session[BACKEND_SESSION_KEY] = str(user.pk), settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    conversations = [actions.do_start_conversation(org, user, agent=agent).pk for _ in range(payload["conversations"])]
    # A conversation with a ~1,500-token history (MedQuAD answers), and a spare.
    history = []
    with open(ROOT / "projects/demo_data/medquad-train-subset.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    long_ids = []
    for _ in range(2):
        conversation = actions.do_start_conversation(org, user, agent=agent)
        long_ids.append(conversation.pk)
    n_chars = 0
    for row in rows:
        if n_chars > payload["history_chars"]:
            break
        answer = row["answer"][:900]
        history.append((row["question"], answer))
        n_chars += len(row["question"]) + len(answer)
    for conversation_id in long_ids:
        for question, answer in history:
            Message.objects.create(conversation_id=conversation_id, role="user", content=question)
            Message.objects.create(conversation_id=conversation_id, role="assistant", content=answer)
    return {
        "org": org.slug,
        "agent": agent.slug,
        "token": token,
        "session": session.session_key,
        "conversations": conversations,
        "long": long_ids,
        "gguf": str(demo_teacher_path()),
        "history_turns": len(history),
    }


# --- clients -------------------------------------------------------------------------------------


class Timing:
    """One answer as a client sees it."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = None
        self.last = None
        self.tokens = 0
        self.text = []

    def piece(self, text: str, tokens: int = 1) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.tokens += tokens
        self.text.append(text)

    def result(self) -> dict:
        decode = (self.tokens - 1) / (self.last - self.first) if self.tokens > 1 and self.last > self.first else None
        return {
            "ttft_ms": round((self.first - self.start) * 1000, 2) if self.first else None,
            "decode_tokens_per_s": round(decode, 2) if decode else None,
            "tokens": self.tokens,
            "text": "".join(self.text),
        }


class Direct:
    """llama-cpp-python alone, in this process, loaded once like the server's cache loads it."""

    def __init__(self, gguf: str) -> None:
        from llama_cpp import Llama

        threads = len(os.sched_getaffinity(0))
        self.llm = Llama(
            model_path=gguf, n_ctx=CONTEXT, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False
        )

    def answer(self, question: str, max_tokens: int) -> dict:
        timing = Timing()
        for chunk in self.llm.create_chat_completion(
            [{"role": "user", "content": question}],
            max_tokens=max_tokens,
            temperature=0.0,
            top_p=0.95,
            top_k=40,
            min_p=0.05,
            repeat_penalty=1.0,
            stream=True,
        ):
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                timing.piece(text)
        return timing.result()

    def close(self) -> None:
        self.llm.close()


class Socket:
    def __init__(self, port: int, seed: dict, conversation_id: int) -> None:
        from websockets.sync.client import connect

        self.ws = connect(
            f"ws://127.0.0.1:{port}/ws/o/{seed['org']}/conversations/{conversation_id}/",
            additional_headers={"Cookie": f"sessionid={seed['session']}", "Origin": f"http://127.0.0.1:{port}"},
            max_size=None,
        )
        snapshot = json.loads(self.ws.recv(timeout=30))
        assert snapshot["type"] == "snapshot", snapshot

    def ask(self, content: str) -> tuple[dict, dict]:
        return self._answer({"type": "send", "content": content})

    def regenerate(self) -> tuple[dict, dict]:
        return self._answer({"type": "regenerate"})

    def _answer(self, request: dict) -> tuple[dict, dict]:
        timing = Timing()
        self.ws.send(json.dumps(request))
        answer_id = None
        while True:
            event = json.loads(self.ws.recv(timeout=300))
            if event["type"] == "answer":
                answer_id = event["message"]["id"]
            elif event["type"] == "delta":
                if event["id"] != answer_id:
                    raise AssertionError(f"a delta of answer {event['id']} arrived in the stream of {answer_id}")
                timing.piece(event["text"], event.get("tokens", 1))
            elif event["type"] == "end":
                return timing.result(), event["message"]
            elif event["type"] == "error":
                raise RuntimeError(event["message"])

    def close(self) -> None:
        self.ws.close()


def socket_answer(port: int, seed: dict, conversation_id: int, question: str) -> tuple[dict, dict]:
    sock = Socket(port, seed, conversation_id)
    try:
        return sock.ask(question)
    finally:
        sock.close()


def api_answer(client, seed: dict, question: str) -> dict:
    timing = Timing()
    stream = client.chat.completions.create(
        model=seed["agent"],
        messages=[{"role": "user", "content": question}],
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            timing.piece(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    if usage is not None and usage.completion_tokens:
        timing.tokens = usage.completion_tokens  # a chunk may carry more than one token
    return timing.result()


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summary(rows: list[dict]) -> dict:
    return {
        "ttft_ms_median": median([r["ttft_ms"] for r in rows]),
        "decode_tokens_per_s_median": median([r["decode_tokens_per_s"] for r in rows]),
        "tokens_median": median([r["tokens"] for r in rows]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=5, help="answers per path (distinct questions)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--history-chars", type=int, default=6000, help="history of the resume test (~1,500 tokens)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/chat.json"))
    args = parser.parse_args()
    questions = QUESTIONS[: args.answers]

    work = Path(tempfile.mkdtemp(prefix="hartonomous-chat-bench-"))
    redis_proc, redis_url = start_redis(work)
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATA_DIR": str(work / "data"),
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{work / 'data' / 'bench.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "hartonomous_web.settings",
    }
    server = None
    try:
        log("migrating and seeding", work)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        n_conversations = 2 * args.answers + 2 * args.concurrent
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "_seed",
                json.dumps(
                    {
                        "max_tokens": args.max_tokens,
                        "conversations": n_conversations,
                        "history_chars": args.history_chars,
                    }
                ),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise RuntimeError(result.stderr[-3000:])
        seed = json.loads(result.stdout.strip().splitlines()[-1])
        conversations = iter(seed["conversations"])

        log("starting the server as scripts/run.sh does (one uvicorn process)")
        server_log = open(work / "server.log", "wb")
        server = subprocess.Popen(
            uvicorn_command(sys.executable, "127.0.0.1", port),
            cwd=ROOT,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200, "server", 90
        )

        from openai import OpenAI

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=seed["token"], timeout=600)
        log("warming up (the server loads the model on first use)")
        api_answer(client, seed, "Hello")
        socket_answer(port, seed, next(conversations), "Hello")

        log("direct llama-cpp-python, websocket and OpenAI API, taking turns")
        engine = Direct(seed["gguf"])
        engine.answer("Hello", 8)  # warm, as the server was
        direct, socket_rows, api_rows = [], [], []
        for question in questions:  # interleaved, so drift on a shared machine hits all three alike
            direct.append(engine.answer(question, args.max_tokens))
            socket_rows.append(socket_answer(port, seed, next(conversations), question)[0])
            api_rows.append(api_answer(client, seed, question))
        same_text = [d["text"] == s["text"] == a["text"] for d, s, a in zip(direct, socket_rows, api_rows, strict=True)]
        engine.close()

        log(f"{args.concurrent} concurrent websocket conversations")
        alone = {q: r["text"] for q, r in zip(questions, socket_rows, strict=True)}
        concurrent_questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.concurrent)]
        for question in concurrent_questions:
            if question not in alone:
                alone[question] = socket_answer(port, seed, next(conversations), question)[0]["text"]
        outcomes: list = [None] * args.concurrent
        ids = [next(conversations) for _ in range(args.concurrent)]

        def one(i: int) -> None:
            try:
                outcomes[i] = socket_answer(port, seed, ids[i], concurrent_questions[i])
            except Exception as error:  # noqa: BLE001 - counted as lost
                outcomes[i] = error

        began = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        lost = [i for i, o in enumerate(outcomes) if isinstance(o, Exception) or o is None]
        whole = [
            i
            for i, o in enumerate(outcomes)
            if i not in lost and o[0]["text"] == o[1]["content"] and o[1]["status"] == "complete"
        ]
        unmixed = [i for i in whole if outcomes[i][0]["text"] == alone[concurrent_questions[i]]]
        total_tokens = sum(outcomes[i][1]["completion_tokens"] for i in whole)
        ttfts = sorted(outcomes[i][0]["ttft_ms"] for i in whole)

        log("resume with the saved state against re-reading a ~1,500-token conversation")
        # One conversation, one prompt, measured twice: resumed from its saved state, then (state
        # deleted) read again from scratch. Between turns another conversation takes the model.
        long_id = seed["long"][0]
        sock = Socket(port, seed, long_id)
        first_turn, _ = sock.ask("Summarise what we discussed in one sentence.")
        socket_answer(port, seed, next(conversations), "What is a fever?")
        resumed, resumed_message = sock.ask("Which of these is most common?")
        socket_answer(port, seed, next(conversations), "What is a cough?")
        for state in (work / "data" / "kv-states").glob(f"conversation-{long_id}-*"):
            state.unlink()
        reread, reread_message = sock.regenerate()
        sock.close()

        d, s, a = summary(direct), summary(socket_rows), summary(api_rows)

        def ratio(x, y):
            return round(x / y, 3) if x and y else None

        results = {
            "benchmark": "chat",
            "machine": describe(),
            "model": {
                "file": Path(seed["gguf"]).name,
                "context": CONTEXT,
                "max_tokens": args.max_tokens,
                "sampling": "greedy (temperature 0)",
                "threads": len(os.sched_getaffinity(0)),
            },
            "server": "one uvicorn process, DEBUG=0, SQLite, private Redis (scripts/run.sh)",
            "paths": {"direct_llama_cpp_python": d, "websocket": s, "openai_api_stream": a},
            "decode_ratio": {
                "websocket": ratio(s["decode_tokens_per_s_median"], d["decode_tokens_per_s_median"]),
                "openai_api": ratio(a["decode_tokens_per_s_median"], d["decode_tokens_per_s_median"]),
                "goal": GOAL_DECODE_RATIO,
            },
            "ttft_overhead_ms": {
                "websocket": round(s["ttft_ms_median"] - d["ttft_ms_median"], 2),
                "openai_api": round(a["ttft_ms_median"] - d["ttft_ms_median"], 2),
                "goal": GOAL_TTFT_OVERHEAD_MS,
            },
            "same_answer_on_all_paths": same_text,
            "per_answer": {
                "direct": [{k: v for k, v in r.items() if k != "text"} for r in direct],
                "websocket": [{k: v for k, v in r.items() if k != "text"} for r in socket_rows],
                "openai_api": [{k: v for k, v in r.items() if k != "text"} for r in api_rows],
            },
            "concurrent": {
                "conversations": args.concurrent,
                "wall_s": round(wall, 2),
                "lost": len(lost),
                "whole": len(whole),
                "identical_to_alone": len(unmixed),
                "aggregate_tokens_per_s": round(total_tokens / wall, 2),
                "ttft_ms_min": ttfts[0] if ttfts else None,
                "ttft_ms_max": ttfts[-1] if ttfts else None,
                "note": "one llama.cpp context per model: answers take turns (first come, first served) "
                "on the model's own thread",
            },
            "resume_1500_tokens": {
                "history_turns": seed["history_turns"],
                "prompt_tokens": resumed_message["prompt_tokens"],
                "same_answer": resumed["text"] == reread["text"],
                "first_turn_ttft_ms": first_turn["ttft_ms"],
                "resumed_with_saved_state_ttft_ms": resumed["ttft_ms"],
                "reread_ttft_ms": reread["ttft_ms"],
                "reread_prompt_tokens": reread_message["prompt_tokens"],
                "speedup": ratio(reread["ttft_ms"], resumed["ttft_ms"]),
                "note": "same prompt both times; greedy answers may part after a while, because KV entries made "
                "token by token and in 512-token batches differ in the last bits",
            },
        }
        print(json.dumps(results, indent=2))
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return 0 if not lost and len(unmixed) == args.concurrent else 1
    finally:
        stop(server)
        stop(redis_proc)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_seed":
        print(json.dumps(_seed(json.loads(sys.argv[2]))))
    else:
        sys.exit(main())
