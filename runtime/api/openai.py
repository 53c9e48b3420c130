"""The OpenAI-compatible API: ``GET /v1/models``, ``GET /v1/models/<id>``, ``POST /v1/chat/completions``.

Any OpenAI client talks to one organisation's agents with a personal API token::

    client = OpenAI(base_url="https://hartonomous.example/v1", api_key="hart_…")
    client.chat.completions.create(model="<agent or endpoint slug>", messages=[…], stream=True)

- The token's organisation is the tenant: ``model`` is the slug of one of its agents or endpoints
  (an endpoint picks the agent with :func:`runtime.actions.choose_variant`, sticky per conversation).
  A slug of another organisation gets the same 404 as one that does not exist. Only bearer tokens
  are accepted here (no browser session, so no CSRF either); listing needs any role, chatting the
  member role.
- Plain async Django views, not DRF: an answer streams for as long as the model writes, and an
  async view waits for tokens on the event loop (the model runs in :mod:`runtime.serving`'s
  inference threads) instead of holding one of the few request threads.
- Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, and say what to
  do. ``x-should-retry`` tells OpenAI's clients whether retrying can help (they retry 409 and 5xx
  by default).
- Audit: every request that reaches an agent — the token is valid, the model exists, the
  parameters are valid — leaves exactly one :class:`~runtime.models.InferenceRecord` (source
  ``api``): complete, failed (not deployed, engine error, prompt too long) or interrupted (the
  client went away before the answer was complete; Django then cancels the view or the stream,
  which stops the generation within a token). A stream's record is written before ``[DONE]``.
- Throttling: DRF's rate limits do not apply to these views; each model answers one request at a
  time (the engine's first-come line), which bounds the work a token can cause, not the requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions

from projects.api.auth import BearerTokenAuthentication
from projects.models import ApiToken, Membership, Organization, Role
from runtime import actions, serving
from runtime.engine.chat import (
    ChatRequest,
    ContextOverflow,
    Delta,
    Finished,
    GenerationSettings,
    InferenceError,
    MemoryBudgetExceeded,
    Queued,
    Started,
)
from runtime.models import Agent, AgentStatus, Endpoint, Outcome, Source

logger = logging.getLogger(__name__)

#: Roles a message may have; "developer" is OpenAI's newer name for "system".
ROLE_ALIASES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_MESSAGES = 1000


class OpenAIError(Exception):
    """A failed request, answered in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.retry = retry
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> HttpResponse:
        response = JsonResponse(self.body(), status=self.status)
        response["x-should-retry"] = "true" if self.retry else "false"
        for header, value in self.headers.items():
            response[header] = value
        return response


def bad_request(message: str, param: str | None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code="invalid_value" if param else "invalid_request")


# --- who is asking --------------------------------------------------------------------------------


@dataclass
class Caller:
    token: ApiToken
    membership: Membership

    @property
    def org(self) -> Organization:
        return self.membership.organization

    @property
    def user(self):
        return self.membership.user


def authenticate(request: HttpRequest) -> Caller:
    """The caller of a ``/v1/`` request: an organisation's API token and its owner's membership."""
    try:
        found = BearerTokenAuthentication().authenticate(request)
    except drf_exceptions.AuthenticationFailed as error:
        raise OpenAIError(
            401, str(error.detail), code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        ) from None
    if found is None:
        raise OpenAIError(
            401,
            "No API key: send `Authorization: Bearer <token>` with a personal API token of your organisation "
            "(Settings → API tokens). Browser sessions are not accepted here.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user, token = found
    membership = (
        Membership.objects.for_org(token.organization).select_related("organization", "user").filter(user=user).first()
    )
    if membership is None:  # removed between the two reads
        raise OpenAIError(401, "This token's owner is no longer a member of its organisation.", code="invalid_api_key")
    return Caller(token, membership)


def require_role(caller: Caller, role: str, doing: str) -> None:
    if not caller.membership.has_role(role):
        raise OpenAIError(
            403,
            f"{doing} needs the {role} role in {caller.org.slug}; this token's owner is a "
            f"{caller.membership.role}. Ask an admin of the organisation for the {role} role.",
            code="permission_denied",
        )


# --- models ---------------------------------------------------------------------------------------


def model_object(target: Agent | Endpoint, org: Organization) -> dict:
    return {"id": target.slug, "object": "model", "created": int(target.created_at.timestamp()), "owned_by": org.slug}


def not_found(slug: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model `{slug}` does not exist or you do not have access to it. "
        "GET /v1/models lists the agents and endpoints of your organisation.",
        param="model",
        code="model_not_found",
    )


def find_model(org: Organization, slug: str) -> Agent | Endpoint:
    """The agent or endpoint called ``slug`` in ``org`` (they share one namespace)."""
    agent = Agent.objects.for_org(org).select_related("model").filter(slug=slug).first()
    if agent is not None:
        return agent
    endpoint = (
        Endpoint.objects.for_org(org).select_related("baseline__model", "candidate__model").filter(slug=slug).first()
    )
    if endpoint is not None:
        return endpoint
    raise not_found(slug)


def _list_models(request: HttpRequest) -> dict:
    caller = authenticate(request)
    targets = [*Agent.objects.for_org(caller.org), *Endpoint.objects.for_org(caller.org)]
    return {"object": "list", "data": [model_object(t, caller.org) for t in sorted(targets, key=lambda t: t.slug)]}


def _retrieve_model(request: HttpRequest, slug: str) -> dict:
    caller = authenticate(request)
    return model_object(find_model(caller.org, slug), caller.org)


def method_not_allowed(allowed: str) -> HttpResponse:
    response = OpenAIError(405, f"Use {allowed} on this route.", code="method_not_allowed").response()
    response["Allow"] = allowed
    return response


@csrf_exempt
async def list_models(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        return JsonResponse(await sync_to_async(_list_models)(request))
    except OpenAIError as error:
        return error.response()


@csrf_exempt
async def retrieve_model(request: HttpRequest, model: str) -> HttpResponse:
    if request.method != "GET":
        return method_not_allowed("GET")
    try:
        return JsonResponse(await sync_to_async(_retrieve_model)(request, model))
    except OpenAIError as error:
        return error.response()


# --- request parameters ---------------------------------------------------------------------------


@dataclass
class CompletionParams:
    """A chat completion request, checked."""

    model: str
    messages: list[dict]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    user: str = ""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict, name: str, low: float, high: float, *, above_low: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or (value <= low if above_low else value < low):
        lower = f"greater than {low:g}" if above_low else f"at least {low:g}"
        raise bad_request(f"`{name}` must be a number {lower} and at most {high:g}, not {value!r}.", name)
    return float(value)


def _content(value, where: str) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        parts = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad_request(
                    f"{where}.content[{j}] is of type {kind!r}: only text parts "
                    '({"type": "text", "text": "..."}) are supported.',
                    f"{where}.content",
                )
            parts.append(part["text"])
        text = "\n".join(parts)
    else:
        raise bad_request(f"{where}.content must be a string or a list of text parts.", f"{where}.content")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise bad_request(
            f"{where}.content is {len(text)} characters; the limit is {settings.CHAT_MAX_MESSAGE_CHARS}.",
            f"{where}.content",
        )
    return text


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise bad_request('`messages` must be a non-empty list of {"role", "content"} objects.', "messages")
    if len(value) > MAX_MESSAGES:
        raise bad_request(f"`messages` has {len(value)} entries; the limit is {MAX_MESSAGES}.", "messages")
    messages = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object with `role` and `content`.", where)
        role = ROLE_ALIASES.get(message.get("role")) if isinstance(message.get("role"), str) else None
        if role is None:
            raise bad_request(
                f"{where}.role is {message.get('role')!r}: use system, user or assistant "
                "(tool and function messages are not supported).",
                f"{where}.role",
            )
        if message.get("tool_calls") or message.get("function_call"):
            raise bad_request(f"{where} has tool calls: tools are not supported.", f"{where}.tool_calls")
        messages.append({"role": role, "content": _content(message.get("content"), where)})
    return messages


def parse_params(body) -> CompletionParams:
    """Check a chat completion request; :class:`OpenAIError` (400, with ``param``) names what is wrong."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("`model` is required: the slug of an agent or endpoint (GET /v1/models lists them).", "model")
    messages = _messages(body.get("messages"))
    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        raise bad_request(f"Only one choice per request is supported (n=1), not n={n!r}.", "n")
    for name in ("tools", "functions"):
        if body.get(name):
            raise bad_request(f"`{name}` is not supported: agents answer with text only.", name)
    if body.get("logprobs"):
        raise bad_request("`logprobs` is not supported.", "logprobs")
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type") != "text"):
        raise bad_request('Only `response_format` {"type": "text"} is supported.', "response_format")
    temperature = _number(body, "temperature", 0, 2)
    top_p = _number(body, "top_p", 0, 1, above_low=True)
    max_tokens = None
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not _is_int(value) or not 1 <= value <= 1_048_576:
            raise bad_request(f"`{name}` must be a whole number of tokens, at least 1, not {value!r}.", name)
        max_tokens = value if max_tokens is None else max_tokens
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stop = tuple(stop)
    else:
        raise bad_request("`stop` must be a string or a list of strings.", "stop")
    if len(stop) > 4 or not all(stop):
        raise bad_request("`stop` takes at most 4 non-empty strings.", "stop")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise bad_request(f"`seed` must be a whole number, not {seed!r}.", "seed")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("`stream` must be true or false.", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request('`stream_options` must be an object such as {"include_usage": true}.', "stream_options")
    include_usage = (options or {}).get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise bad_request("`stream_options.include_usage` must be true or false.", "stream_options")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > 256):
        raise bad_request("`user` must be a string of at most 256 characters.", "user")
    return CompletionParams(
        model=model,
        messages=messages,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop=stop,
        # llama.cpp seeds are 32-bit; OpenAI's are 64-bit: fold, so every seed still gives one stream.
        seed=seed % 2**32 if seed is not None else None,
        stream=bool(stream),
        include_usage=include_usage and bool(stream),
        user=user or "",
    )


# --- one chat completion --------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything a completion needs, gathered (in a request thread) before generation starts."""

    caller: Caller
    params: CompletionParams
    agent: Agent
    endpoint: Endpoint | None
    variant: str
    backend: object
    request: ChatRequest


def record_inference(
    caller: Caller,
    agent: Agent,
    endpoint: Endpoint | None,
    variant: str,
    *,
    outcome: str,
    started: float,
    error: str = "",
    ttft_ms: int | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    """The request's audit row; latency counts from the moment the request arrived."""
    actions.do_record_inference(
        caller.org,
        agent=agent,
        source=Source.API,
        outcome=outcome,
        user=caller.user,
        token=caller.token,
        endpoint=endpoint,
        variant=variant,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        ttft_ms=ttft_ms,
        latency_ms=int((time.perf_counter() - started) * 1000),
        error=error,
    )


def _not_ready(name: str, agent: Agent, org: Organization) -> OpenAIError:
    deploy = (
        f"Deploy it: POST /api/v1/orgs/{org.slug}/agents/{agent.pk}/deploy/ (or the Deploy button on the "
        "agent's page), then try again."
    )
    if agent.status == AgentStatus.DEPLOYING:
        return OpenAIError(
            503,
            f"{name} is being deployed (its model is loading); try again in a few seconds.",
            type="server_error",
            code="model_not_ready",
            retry=True,
            headers={"Retry-After": "2"},
        )
    if agent.status == AgentStatus.FAILED:
        return OpenAIError(
            409,
            f"{name} failed to deploy: {agent.error} Fix the cause, then deploy it again. {deploy}",
            code="model_not_deployed",
        )
    return OpenAIError(409, f"{name} is not deployed. {deploy}", code="model_not_deployed")


def prepare(request: HttpRequest, started: float) -> Plan:
    """Authenticate, check, route and build the request for the engine (sync: touches the database)."""
    caller = authenticate(request)
    require_role(caller, Role.MEMBER, "Chatting with agents")
    params = parse_params(read_json(request))
    target = find_model(caller.org, params.model)
    if isinstance(target, Endpoint):
        endpoint = target
        agent, variant = actions.choose_variant(endpoint, actions.api_conversation_key(params.messages, params.user))
        name = f"The agent `{agent.slug}` answering endpoint `{endpoint.slug}`"
    else:
        endpoint, agent, variant = None, target, ""
        name = f"The agent `{agent.slug}`"

    def refuse(error: OpenAIError):
        record_inference(caller, agent, endpoint, variant, outcome=Outcome.FAILED, started=started, error=error.message)
        return error

    if agent.status != AgentStatus.LIVE:
        raise refuse(_not_ready(name, agent, caller.org))
    try:
        backend = serving.backend_for(agent)
    except (InferenceError, ValueError, OSError) as error:
        raise refuse(
            OpenAIError(500, f"{name} cannot answer: {error}", type="server_error", code="backend_unavailable")
        ) from None
    except StopIteration:  # the model has no file left in storage
        raise refuse(
            OpenAIError(
                500,
                f"{name} cannot answer: its model file is missing from storage. Re-upload the model.",
                type="server_error",
                code="backend_unavailable",
            )
        ) from None
    messages = params.messages
    if agent.system_prompt and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": agent.system_prompt}, *messages]
    try:
        chat = ChatRequest(
            messages,
            GenerationSettings(
                temperature=params.temperature if params.temperature is not None else agent.temperature,
                top_p=params.top_p if params.top_p is not None else agent.top_p,
                max_tokens=params.max_tokens or agent.max_tokens,
                stop=params.stop,
                seed=params.seed,
            ),
            truncate=False,
        )
    except ValueError as error:
        raise refuse(bad_request(str(error), None)) from None
    return Plan(caller, params, agent, endpoint, variant, backend, chat)


def engine_error(error: Exception) -> OpenAIError:
    if isinstance(error, ContextOverflow):
        return OpenAIError(400, str(error), param="messages", code="context_length_exceeded")
    if isinstance(error, MemoryBudgetExceeded):
        return OpenAIError(503, str(error), type="server_error", code=error.code)
    if isinstance(error, InferenceError):
        return OpenAIError(500, str(error), type="server_error", code=error.code)
    return OpenAIError(
        500,
        f"Generation failed unexpectedly ({type(error).__name__}); the server log has the details.",
        type="server_error",
        code="internal_error",
    )


class Generation:
    """One completion: engine events in, OpenAI's objects out, and exactly one audit row."""

    def __init__(self, plan: Plan, started: float) -> None:
        self.plan = plan
        self.started = started
        self.cancel = threading.Event()
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.text: list[str] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.ttft_ms: int | None = None
        self.finish_reason: str | None = None
        self.events = serving.astream(plan.backend, plan.request, self.cancel)
        self._recorded = False

    # -- bookkeeping ---------------------------------------------------------------------

    def take(self, event) -> None:
        if isinstance(event, Started):
            self.prompt_tokens = event.prompt_tokens
        elif isinstance(event, Delta):
            if self.ttft_ms is None and event.text:
                self.ttft_ms = int((time.perf_counter() - self.started) * 1000)
            self.text.append(event.text)
            self.completion_tokens += event.n_tokens
        elif isinstance(event, Finished):
            self.prompt_tokens = event.prompt_tokens or self.prompt_tokens
            self.completion_tokens = event.completion_tokens or self.completion_tokens
            self.finish_reason = "length" if event.reason == "length" else "stop"

    async def record(self, outcome: str, error: str = "") -> None:
        if self._recorded:
            return
        self._recorded = True
        plan = self.plan
        await asyncio.shield(
            database_sync_to_async(record_inference)(
                plan.caller,
                plan.agent,
                plan.endpoint,
                plan.variant,
                outcome=outcome,
                started=self.started,
                error=error,
                ttft_ms=self.ttft_ms,
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
            )
        )

    async def fail(self, error: Exception) -> OpenAIError:
        if not isinstance(error, InferenceError):
            logger.exception("chat completion %s failed", self.id, exc_info=error)
        answer = engine_error(error)
        await self.record(Outcome.FAILED, answer.message)
        return answer

    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    # -- without streaming ---------------------------------------------------------------

    async def complete(self) -> HttpResponse:
        try:
            async for event in self.events:
                self.take(event)
        except asyncio.CancelledError:
            self.cancel.set()
            await self.record(Outcome.INTERRUPTED, "The client went away before the answer was complete.")
            raise
        except Exception as error:  # noqa: BLE001 - every failure is answered and audited
            return (await self.fail(error)).response()
        await self.record(Outcome.COMPLETE)
        return JsonResponse(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.plan.params.model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(self.text), "refusal": None},
                        "logprobs": None,
                        "finish_reason": self.finish_reason or "stop",
                    }
                ],
                "usage": self.usage(),
            }
        )

    # -- streaming (server-sent events) --------------------------------------------------

    def chunk(self, delta: dict | None, finish_reason: str | None = None, *, usage: dict | None = None) -> bytes:
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.plan.params.model,
            "system_fingerprint": None,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.plan.params.include_usage:
            payload["usage"] = usage
        return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"

    def chunks_of(self, event) -> list[bytes]:
        if isinstance(event, Delta) and event.text:
            return [self.chunk({"content": event.text})]
        if isinstance(event, Finished):
            return [self.chunk({}, self.finish_reason)]
        return []

    async def stream(self) -> HttpResponse:
        """Answer 200 once the engine accepted the prompt; until then a failure is a plain HTTP error.

        A prompt longer than the context or a model that cannot load is refused before the
        stream begins, so clients see the same errors as without streaming.
        """
        accepted = []
        try:
            while True:
                event = await anext(self.events)
                self.take(event)
                accepted.append(event)
                if not isinstance(event, Queued):
                    break
        except StopAsyncIteration:
            pass
        except asyncio.CancelledError:
            self.cancel.set()
            await self.record(Outcome.INTERRUPTED, "The client went away before the answer began.")
            raise
        except Exception as error:  # noqa: BLE001
            return (await self.fail(error)).response()
        response = StreamingHttpResponse(self.sse(accepted), content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # proxies must pass each event on at once
        return response

    async def sse(self, accepted: list):
        outcome, error = Outcome.FAILED, ""
        try:
            yield self.chunk({"role": "assistant", "content": ""})
            for event in accepted:
                for data in self.chunks_of(event):
                    yield data
            async for event in self.events:
                self.take(event)
                for data in self.chunks_of(event):
                    yield data
            if self.finish_reason is None:  # a backend that ended without saying why
                self.finish_reason = "stop"
                yield self.chunk({}, "stop")
            if self.plan.params.include_usage:
                yield self.chunk(None, usage=self.usage())
            # Audited before [DONE]: a client that read the whole stream finds the record.
            outcome = Outcome.COMPLETE
            await self.record(outcome)
            yield b"data: [DONE]\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            # Django cancels (or closes) the stream when the client disconnects.
            outcome, error = Outcome.INTERRUPTED, "The client disconnected mid-stream."
            self.cancel.set()
            raise
        except Exception as failure:  # noqa: BLE001 - reported in the stream, where the client reads it
            if not isinstance(failure, InferenceError):
                logger.exception("chat completion %s failed mid-stream", self.id)
            answer = engine_error(failure)
            error = answer.message
            yield b"data: " + json.dumps(answer.body()).encode() + b"\n\n"
        finally:
            if outcome != Outcome.COMPLETE:
                self.cancel.set()
            await self.events.aclose()  # stops the generation thread (within one token) and waits for it
            await self.record(outcome, error)


def read_json(request: HttpRequest):
    try:
        raw = request.body
    except RequestDataTooBig:
        raise OpenAIError(
            413,
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes; "
            "send a shorter conversation.",
            code="request_too_large",
        ) from None
    try:
        return json.loads(raw)
    except ValueError as error:
        raise bad_request(f"The request body is not valid JSON ({error}).", None) from None


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    started = time.perf_counter()
    if request.method != "POST":
        return method_not_allowed("POST")
    try:
        plan = await sync_to_async(prepare)(request, started)
    except OpenAIError as error:
        return error.response()
    except Exception:  # noqa: BLE001 - clients of this API read JSON errors, never an HTML page
        logger.exception("chat completion request failed")
        return OpenAIError(
            500,
            "The server failed while reading the request; the server log has the details.",
            type="server_error",
            code="internal_error",
        ).response()
    generation = Generation(plan, started)
    return await (generation.stream() if plan.params.stream else generation.complete())
