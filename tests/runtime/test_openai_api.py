"""The OpenAI-compatible API (/v1/) through the official `openai` client, against a real server.

The server (uvicorn, as `make run`) is another process on the test database; agents run a tiny
real GGUF model, loaded by llama.cpp in the server on the first request. The remote backend is
checked by pointing an agent at this same server: a real round trip, no mocks.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import openai
import pytest

from projects import actions as project_actions
from runtime import actions, serving
from runtime.engine.chat import ChatRequest, Delta, Finished, GenerationSettings, Started
from runtime.models import Agent, AgentStatus, InferenceRecord
from tests.runtime.conftest import make_agent
from tests.support.live_server import AsgiServer, free_port

HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """One server for the module (starting one costs seconds); its media folder is shared with the tests."""
    live = AsgiServer(media_root=tmp_path_factory.mktemp("openai-media"))
    try:
        live.wait_until_healthy()
        yield live
    finally:
        live.stop()


@pytest.fixture(autouse=True)
def media_of_the_server(server, isolated_media, settings):
    """Blobs the tests store (the model) are where the server reads them."""
    settings.MEDIA_ROOT = server.media_root


@pytest.fixture(autouse=True)
def no_server_tracebacks(server):
    """Whatever a test sends, the server answers it: no exception escapes to its log."""
    before = server.log_path.stat().st_size
    yield
    with open(server.log_path, "rb") as log:
        log.seek(before)
        written = log.read().decode(errors="replace")
    assert "Traceback" not in written, written[-6000:]


@pytest.fixture
def token(actors, transactional_db):
    """`token(user)`: a fresh API token of Alice's organisation (``org`` for another one)."""

    def make(user=None, org=None):
        return project_actions.do_create_token(org or actors.org, user or actors.member, "api test")

    return make


@pytest.fixture
def client_for(server):
    def make(secret: str) -> openai.OpenAI:
        # No retries: every answer is checked as it comes (the client retries 409 and 5xx by default).
        return openai.OpenAI(api_key=secret, base_url=server.url + "/v1", max_retries=0, timeout=60)

    return make


@pytest.fixture
def live(actors, chat_model):
    """`live(name, **fields)`: an agent on the tiny model, live in the database (the server loads it lazily)."""

    def make(name="Helper", **fields) -> Agent:
        agent = make_agent(actors, chat_model, name=name, deploy=False, **fields)
        Agent.objects.for_org(actors.org).filter(pk=agent.pk).update(status=AgentStatus.LIVE)
        agent.status = AgentStatus.LIVE
        return agent

    return make


def records(org):
    return list(InferenceRecord.objects.for_org(org).order_by("id"))


def post(server, path: str, body, secret: str | None = None):
    """(status, headers (case-insensitive), body) of a POST with urllib."""
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# --- models ---------------------------------------------------------------------------------------


def test_models_lists_the_agents_and_endpoints_of_the_tokens_organisation_only(
    actors, live, token, client_for, chat_model
):
    helper = live("Helper")
    spare = make_agent(actors, chat_model, name="Spare", deploy=False)
    actions.do_create_endpoint(actors.project, actors.owner, name="Support", baseline=helper, candidate=spare)
    theirs = Agent.objects.create(
        organization=actors.other_org,
        project=actors.other_project,
        name="Secret",
        slug="secret",
        backend="remote",
        remote_url="http://127.0.0.1:9/v1",
    )
    client = client_for(token()[1])

    models = client.models.list()
    assert sorted(m.id for m in models.data) == ["helper", "spare", "support"]
    assert {(m.object, m.owned_by) for m in models.data} == {("model", actors.org.slug)}
    assert all(abs(m.created - time.time()) < 600 for m in models.data)
    assert client.models.retrieve("support").id == "support"
    for slug in (theirs.slug, "no-such-model"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve(slug)
        assert caught.value.code == "model_not_found"
    # Charlie's token sees Charlie's organisation and nothing of Alice's.
    charlie = client_for(token(actors.outsider, actors.other_org)[1])
    assert [m.id for m in charlie.models.list().data] == ["secret"]
    with pytest.raises(openai.NotFoundError):
        charlie.models.retrieve("helper")


# --- completions ----------------------------------------------------------------------------------


def test_a_completion_answers_and_leaves_its_audit_row(actors, live, token, client_for):
    agent = live("Helper", system_prompt="You are terse.")
    api_token, secret = token()
    completion = client_for(secret).chat.completions.create(
        model="helper", messages=HELLO, max_tokens=12, temperature=0
    )

    assert (
        completion.object == "chat.completion"
        and completion.model == "helper"
        and completion.id.startswith("chatcmpl-")
    )
    [choice] = completion.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    [record] = records(actors.org)
    assert (record.source, record.outcome, record.error) == ("api", "complete", "")
    assert (record.agent_id, record.model_id, record.endpoint_id, record.variant) == (
        agent.pk,
        agent.model_id,
        None,
        "",
    )
    assert (record.token_id, record.user_id) == (api_token.pk, actors.member.pk)
    assert (record.prompt_tokens, record.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert record.ttft_ms is not None and 0 <= record.ttft_ms <= record.latency_ms

    # The agent's system prompt is part of the prompt unless the request brings its own.
    own = client_for(secret).chat.completions.create(
        model="helper", messages=[{"role": "system", "content": "x"}, *HELLO], max_tokens=1, temperature=0
    )
    assert own.usage.prompt_tokens < usage.prompt_tokens
    # Content as a list of text parts, and the newer "developer" role, are understood.
    parts = client_for(secret).chat.completions.create(
        model="helper",
        max_tokens=1,
        messages=[
            {"role": "developer", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
        ],
    )
    assert parts.usage.prompt_tokens == own.usage.prompt_tokens


def test_streaming_sends_chunks_then_usage_then_done(actors, live, token, client_for, server):
    live("Helper", max_tokens=16)
    api_token, secret = token()
    stream = client_for(secret).chat.completions.create(
        model="helper", messages=HELLO, stream=True, stream_options={"include_usage": True}, temperature=0
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2  # streamed piece by piece
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and {c.object for c in chunks} == {"chat.completion.chunk"}
    [record] = records(actors.org)
    assert record.outcome == "complete" and record.completion_tokens == chunks[-1].usage.completion_tokens
    assert record.prompt_tokens == chunks[-1].usage.prompt_tokens and record.token_id == api_token.pk

    # On the wire: server-sent events, `data: …` blocks, ending with [DONE]; no usage chunk unless asked.
    status, headers, body = post(
        server, "/v1/chat/completions", {"model": "helper", "messages": HELLO, "stream": True, "max_tokens": 4}, secret
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = body.decode().split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert all("usage" not in p and p["choices"] for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_bad_parameters_are_refused_with_the_parameter_named(actors, live, token, client_for):
    live("Helper")
    client = client_for(token()[1])
    cases = [
        (dict(temperature=5), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(n=2), "n"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
        (dict(messages=[]), "messages"),
        (dict(messages=[{"role": "wizard", "content": "hi"}]), "messages[0].role"),
        (
            dict(messages=[*HELLO, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
            "messages[1].content",
        ),
        (dict(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
    ]
    for overrides, param in cases:
        arguments = {"model": "helper", "messages": HELLO, **overrides}
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(**arguments)
        assert caught.value.param == param, (overrides, caught.value.body)
        assert caught.value.type == "invalid_request_error" and caught.value.message
    with pytest.raises(openai.BadRequestError, match="at most 2"):
        client.chat.completions.create(model="helper", messages=HELLO, temperature=5)
    # Requests that never reached an agent leave no audit row.
    assert records(actors.org) == []


def test_unknown_and_foreign_models_get_the_same_404(actors, live, token, client_for, server):
    live("Helper")
    Agent.objects.create(
        organization=actors.other_org,
        project=actors.other_project,
        name="Secret",
        slug="secret",
        status=AgentStatus.LIVE,
        backend="remote",
        remote_url="http://127.0.0.1:9/v1",
    )
    secret = token()[1]
    answers = {}
    for slug in ("secret", "nothing-here"):
        status, _, body = post(server, "/v1/chat/completions", {"model": slug, "messages": HELLO}, secret)
        assert status == 404
        answers[slug] = json.loads(body)["error"]
        with pytest.raises(openai.NotFoundError) as caught:
            client_for(secret).chat.completions.create(model=slug, messages=HELLO)
        assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert answers["secret"] == json.loads(json.dumps(answers["nothing-here"]).replace("nothing-here", "secret"))
    # Org A's token cannot address org B's agent, whoever asks; B's token cannot address A's.
    charlie = client_for(token(actors.outsider, actors.other_org)[1])
    with pytest.raises(openai.NotFoundError):
        charlie.chat.completions.create(model="helper", messages=HELLO)
    assert InferenceRecord.objects.count() == 0


def test_a_prompt_longer_than_the_context_is_refused(actors, live, token, client_for):
    live("Helper", context_length=128)
    client = client_for(token()[1])
    long = [{"role": "user", "content": "word " * 300}]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="helper", messages=long, stream=stream)
        assert caught.value.code == "context_length_exceeded" and "context window is 128 tokens" in caught.value.message
    assert [(r.outcome, "context window" in r.error) for r in records(actors.org)] == [("failed", True)] * 2


def test_roles_and_tokens(actors, live, token, client_for, server):
    live("Helper")
    # A viewer reads (the list of models) but does not chat.
    viewer = client_for(token(actors.viewer)[1])
    assert [m.id for m in viewer.models.list().data] == ["helper"]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        viewer.chat.completions.create(model="helper", messages=HELLO)
    assert caught.value.code == "permission_denied" and "member role" in caught.value.message
    # A revoked token, a made-up one, no token at all: 401.
    revoked, secret = token()
    project_actions.do_revoke_token(revoked)
    for client in (client_for(secret), client_for("hart_not-a-token")):
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="helper", messages=HELLO)
        assert caught.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    status, headers, body = post(server, "/v1/chat/completions", {"model": "helper", "messages": HELLO})
    assert (
        status == 401
        and headers["WWW-Authenticate"] == "Bearer"
        and "Authorization: Bearer" in json.loads(body)["error"]["message"]
    )
    assert records(actors.org) == []


def test_an_agent_that_is_not_live_says_so(actors, live, token, client_for):
    agent = live("Helper")
    client = client_for(token()[1])
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.UNDEPLOYED)
    with pytest.raises(openai.ConflictError) as caught:
        client.chat.completions.create(model="helper", messages=HELLO)
    assert caught.value.code == "model_not_deployed" and "not deployed" in caught.value.message
    assert f"/agents/{agent.pk}/deploy/" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.DEPLOYING)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="helper", messages=HELLO)
    assert caught.value.status_code == 503 and caught.value.code == "model_not_ready"
    assert caught.value.response.headers["Retry-After"] == "2"
    assert [(r.outcome, r.agent_id) for r in records(actors.org)] == [("failed", agent.pk)] * 2


def test_an_engine_failure_is_a_500_with_the_reason(actors, token, client_for):
    unreachable = f"http://127.0.0.1:{free_port()}/v1"
    Agent.objects.create(
        organization=actors.org,
        project=actors.project,
        name="Far",
        slug="far",
        backend="remote",
        remote_url=unreachable,
        status=AgentStatus.LIVE,
    )
    client = client_for(token()[1])
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="far", messages=HELLO, stream=stream)
        assert caught.value.status_code == 500 and "cannot be reached" in caught.value.message
    assert [r.outcome for r in records(actors.org)] == ["failed", "failed"]
    assert "cannot be reached" in records(actors.org)[0].error


def test_closing_the_connection_mid_stream_stops_the_answer(actors, live, token, server):
    live("Talker", max_tokens=400, context_length=512)
    secret = token()[1]
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    body = json.dumps(
        {"model": "talker", "messages": [{"role": "user", "content": "Please keep talking"}], "stream": True}
    )
    connection.request(
        "POST",
        "/v1/chat/completions",
        body=body,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    assert response.status == 200
    seen = b""
    while seen.count(b"data: ") < 3:  # the role chunk and two pieces of text
        seen += response.read1(4096)
    connection.sock.shutdown(2)
    connection.close()

    record = wait_for(lambda: InferenceRecord.objects.for_org(actors.org).first(), what="the audit row")
    assert record.outcome == "interrupted" and "disconnected" in record.error
    assert 0 < record.completion_tokens < 400
    # The model is free again at once: the next answer does not wait for 400 tokens.
    started = time.monotonic()
    status, _, _ = post(server, "/v1/chat/completions", {"model": "talker", "messages": HELLO, "max_tokens": 2}, secret)
    assert status == 200 and time.monotonic() - started < 10


def test_an_endpoint_routes_each_conversation_to_one_variant(actors, live, token, client_for):
    baseline, candidate = live("Baseline"), live("Candidate")
    endpoint = actions.do_create_endpoint(
        actors.project, actors.owner, name="Support", baseline=baseline, candidate=candidate, candidate_share=0.5
    )
    client = client_for(token()[1])

    def variant_of(messages, user=""):
        return actions.choose_variant(endpoint, actions.api_conversation_key(messages, user))[1]

    # Conversations that begin differently, chosen so that both variants answer some.
    openings = [f"Question number {i}" for i in range(40)]
    by_variant = {}
    for opening in openings:
        by_variant.setdefault(variant_of([{"role": "user", "content": opening}]), []).append(opening)
    conversations = by_variant["baseline"][:2] + by_variant["candidate"][:2]
    for opening in conversations:
        first = [{"role": "user", "content": opening}]
        answer = (
            client.chat.completions.create(model="support", messages=first, max_tokens=2).choices[0].message.content
        )
        # The next turn re-sends the beginning: the same agent answers.
        client.chat.completions.create(
            model="support",
            max_tokens=2,
            messages=[*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "And then?"}],
        )
    rows = records(actors.org)
    assert all(r.endpoint_id == endpoint.pk and r.outcome == "complete" for r in rows)
    turns = [(r.variant, r.agent_id) for r in rows]
    expected = [("baseline", baseline.pk)] * 4 + [("candidate", candidate.pk)] * 4
    assert turns == expected
    # The `user` field, when given, is the key: every conversation of that user sticks to one variant.
    for opening in openings[:6]:
        client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": opening}], max_tokens=1, user="customer-42"
        )
    assert len({r.variant for r in records(actors.org)[8:]}) == 1
    assert records(actors.org)[8].variant == variant_of([], "customer-42")
    # The endpoint's name is what the client sees; which agent answered stays on our side.
    assert client.chat.completions.create(model="support", messages=HELLO, max_tokens=1).model == "support"


def test_the_conversation_key_is_the_user_or_the_beginning_of_the_conversation():
    key = actions.api_conversation_key
    opening = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    later = [*opening, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "More"}]
    assert key(opening) == key(later)  # every turn re-sends the beginning
    assert key(opening) != key([{"role": "user", "content": "Hi"}])  # another system prompt: another conversation
    assert key(opening) != key([opening[0], {"role": "user", "content": "Hi!"}])
    assert key(opening, "customer-42") == key(later, "customer-42") == key([], "customer-42") != key(opening)


def test_a_remote_agent_talks_to_an_openai_compatible_server(actors, live, token, client_for, server):
    """The remote backend against this same server: llama agent <- /v1/ <- RemoteBackend <- remote agent."""
    live("Tiny", max_tokens=8)
    api_token, secret = token()
    remote = make_agent(
        actors,
        None,
        name="Relay",
        backend="remote",
        remote_url=server.url + "/v1",
        remote_model="tiny",
        remote_api_key=secret,
        max_tokens=8,
    )
    assert remote.status == AgentStatus.LIVE and remote.deployment["backend"] == "remote"  # it reached /v1/models

    # The engine alone (in this process): RemoteBackend streams from the server.
    backend = serving.backend_for(Agent.objects.get(pk=remote.pk))
    events = list(
        backend.stream(
            ChatRequest(HELLO, GenerationSettings(max_tokens=8, temperature=0), truncate=False), threading.Event()
        )
    )
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    text = "".join(e.text for e in events if isinstance(e, Delta))
    finished = events[-1]
    assert text and finished.reason in ("stop", "length") and 0 < finished.completion_tokens <= 8
    assert finished.prompt_tokens > 0  # from the usage chunk
    [inner] = records(actors.org)
    assert (inner.agent.slug, inner.token_id, inner.completion_tokens) == (
        "tiny",
        api_token.pk,
        finished.completion_tokens,
    )

    # Through the server twice: a client asks the relay, the relay asks the tiny agent.
    relayed = client_for(secret).chat.completions.create(model="relay", messages=HELLO, max_tokens=8, temperature=0)
    assert relayed.choices[0].message.content and relayed.usage.completion_tokens == finished.completion_tokens
    rows = records(actors.org)[1:]
    assert sorted(r.agent.slug for r in rows) == ["relay", "tiny"] and {r.outcome for r in rows} == {"complete"}
    # A remote error comes back as an error of the relay.
    Agent.objects.filter(slug="tiny").update(status=AgentStatus.UNDEPLOYED)
    with pytest.raises(openai.InternalServerError) as caught:
        client_for(secret).chat.completions.create(model="relay", messages=HELLO)
    assert "409" in caught.value.message and "not deployed" in caught.value.message


class SlowUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that streams one word every 0.25 s (a busy remote GPU host)."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(6):
            chunk = {"choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.25)
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_agent(actors, transactional_db):
    """A live remote agent whose server takes 1.5 s to answer."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), SlowUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    yield Agent.objects.create(
        organization=actors.org,
        project=actors.project,
        name="Slow",
        slug="slow",
        backend="remote",
        remote_url=f"http://127.0.0.1:{upstream.server_port}/v1",
        status=AgentStatus.LIVE,
    )
    upstream.shutdown()


def test_closing_the_connection_before_a_whole_answer_interrupts_it(actors, slow_agent, token, server):
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    connection.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps({"model": "slow", "messages": HELLO}),
        headers={"Authorization": f"Bearer {token()[1]}", "Content-Type": "application/json"},
    )
    time.sleep(0.4)  # the answer is being written
    connection.sock.shutdown(2)
    connection.close()
    closed = time.monotonic()
    record = wait_for(lambda: InferenceRecord.objects.for_org(actors.org).first(), what="the audit row")
    assert record.outcome == "interrupted" and "went away" in record.error
    assert time.monotonic() - closed < 1.0  # stopped at once, not when the upstream finished


def test_long_streams_do_not_hold_up_other_requests(slow_agent, token):
    secret = token()[1]
    server = AsgiServer(env={"WEB_THREADS": "2"})
    try:
        server.wait_until_healthy()
        streams = [
            threading.Thread(
                target=post,
                args=(server, "/v1/chat/completions", {"model": "slow", "messages": HELLO, "stream": True}, secret),
            )
            for _ in range(2)
        ]
        for stream in streams:
            stream.start()
        time.sleep(0.5)  # both streams are under way (each lasts 1.5 s)
        started = time.monotonic()
        urllib.request.urlopen(server.url + "/healthz", timeout=30).read()
        waited = time.monotonic() - started
        for stream in streams:
            stream.join()
        assert waited < 0.5, f"/healthz waited {waited:.1f} s behind streaming answers"
    finally:
        server.stop()
