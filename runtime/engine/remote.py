"""A remote OpenAI-compatible endpoint (llama.cpp server, vLLM, another Hartonomous) as a backend.

This is how chat scales past one process: GPU hosts run an inference server and agents point at
it with a URL and a key. Streaming uses server-sent events, read line by line (no buffering of the
whole answer); ``cancel`` closes the connection, which stops generation on servers that notice.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from runtime.engine.chat import ChatRequest, ContextOverflow, Delta, Event, Finished, InferenceError, Started


@dataclass(frozen=True)
class RemoteSpec:
    base_url: str
    """e.g. ``http://gpu-host:8080/v1`` (``/chat/completions`` is appended)."""
    model: str
    """The ``model`` field sent to the server."""
    api_key: str = ""
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"The remote URL must start with http:// or https://, not {self.base_url!r}.")


class RemoteBackend:
    def __init__(self, spec: RemoteSpec) -> None:
        self.spec = spec

    def _post(self, body: dict):
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.spec.api_key:
            headers["Authorization"] = f"Bearer {self.spec.api_key}"
        request = urllib.request.Request(
            self.spec.base_url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        try:
            return urllib.request.urlopen(request, timeout=self.spec.timeout)
        except urllib.error.HTTPError as error:
            message = _error_message(error)
            if "context" in message.lower() and error.code == 400:
                raise ContextOverflow(f"The remote endpoint refused the prompt: {message}") from error
            raise InferenceError(
                f"The remote endpoint {self.spec.base_url} answered {error.code}: {message}"
            ) from error
        except (urllib.error.URLError, OSError) as error:
            raise InferenceError(
                f"The remote endpoint {self.spec.base_url} cannot be reached ({getattr(error, 'reason', error)}). "
                "Check the URL and that the server is running."
            ) from error

    def stream(self, request: ChatRequest, cancel: threading.Event) -> Iterator[Event]:
        started = time.perf_counter()
        settings = request.settings
        body = {
            "model": self.spec.model,
            "messages": request.messages,
            "stream": True,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
            "stream_options": {"include_usage": True},
        }
        if settings.stop:
            body["stop"] = list(settings.stop)
        if settings.seed is not None:
            body["seed"] = settings.seed
        response = self._post(body)
        prompt_tokens = completion_tokens = 0
        first = None
        reason = "stop"
        started_sent = False
        try:
            for raw in response:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise InferenceError("The remote endpoint sent a malformed event stream.") from None
                if "error" in chunk:
                    raise InferenceError(f"The remote endpoint failed: {chunk['error'].get('message', chunk['error'])}")
                usage = chunk.get("usage") or {}
                prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
                completion_tokens = usage.get("completion_tokens", completion_tokens)
                for choice in chunk.get("choices") or []:
                    if not started_sent:
                        started_sent = True
                        yield Started(0, 0, 0)
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        first = first or time.perf_counter()
                        yield Delta(text, 1)
                    if choice.get("finish_reason"):
                        reason = "length" if choice["finish_reason"] == "length" else "stop"
                if cancel.is_set():
                    reason = "cancelled"
                    break
        except (OSError, urllib.error.URLError) as error:
            raise InferenceError(f"The connection to the remote endpoint broke while streaming ({error}).") from error
        finally:
            response.close()
        if not started_sent:
            yield Started(prompt_tokens, 0, 0)
        now = time.perf_counter()
        yield Finished(reason, prompt_tokens, completion_tokens, (first or now) - started, now - started)


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read().decode("utf-8", "replace"))
        detail = body.get("error", body)
        return detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
    except (ValueError, OSError):
        return error.reason or "no details"
