"""A fake OpenAI-protocol server: a real HTTP server on 127.0.0.1:0 (thread) with scripted answers.

Speaks ``POST /v1/chat/completions`` and ``POST /v1/responses``. Answers are consumed in order; a call with
nothing scripted gets a 500 and is still counted, so "no second call" is testable. Every request is kept
(path, headers, JSON body) for assertions.

    with FakeLLMServer() as server:
        server.script(Reply.json({"summary": "...", "edits": [...]}), Reply.status(429, retry_after="7"))
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    kind: str  # content | refusal | status | length
    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    prompt_tokens: int = 100
    completion_tokens: int = 50

    @classmethod
    def json(cls, payload: Any, **kwargs: Any) -> Reply:
        """A completion whose content is ``payload`` serialised as JSON."""
        return cls("content", content=json.dumps(payload), **kwargs)

    @classmethod
    def text(cls, content: str, **kwargs: Any) -> Reply:
        """A completion with raw content (e.g. malformed JSON)."""
        return cls("content", content=content, **kwargs)

    @classmethod
    def refusal(cls, message: str = "I can't help with that.") -> Reply:
        return cls("refusal", content=message)

    @classmethod
    def truncated(cls, content: str = '{"summary": "cut') -> Reply:
        return cls("length", content=content)

    @classmethod
    def error(cls, status: int, *, retry_after: str | None = None, body: str | None = None) -> Reply:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        payload = body or json.dumps(
            {"error": {"message": f"scripted {status}", "type": "scripted", "code": None}}
        )
        return cls("status", content=payload, status=status, headers=headers)

    @classmethod
    def slow(cls, seconds: float, then: Reply) -> Reply:
        return cls(
            then.kind,
            then.content,
            then.status,
            then.headers,
            seconds,
            then.prompt_tokens,
            then.completion_tokens,
        )


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: str
    #: When the request arrived (``time.monotonic()``), so tests can check the spacing of retries.
    at: float = field(default_factory=time.monotonic)


class FakeLLMServer:
    """The server; use as a context manager (starts and stops the thread)."""

    def __init__(self) -> None:
        self._answers: list[Reply] = []
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def calls(self) -> int:
        return len(self.requests)

    def script(self, *answers: Reply) -> None:
        with self._lock:
            self._answers.extend(answers)

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self) -> Reply | None:
        with self._lock:
            return self._answers.pop(0) if self._answers else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                try:
                    body = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    body = {}
                with server._lock:
                    server.requests.append(
                        RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body, raw)
                    )
                reply = server._next()
                if reply is None:
                    reply = Reply.error(500, body=json.dumps({"error": {"message": "nothing scripted"}}))
                if reply.delay:
                    time.sleep(reply.delay)
                if self.path.rstrip("/").endswith("/responses"):
                    status, payload = _responses_payload(reply, body)
                elif self.path.rstrip("/").endswith("/chat/completions"):
                    status, payload = _chat_payload(reply, body)
                else:
                    status, payload = 404, json.dumps({"error": {"message": "unknown path"}})
                data = payload.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    return

        return Handler


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _chat_payload(reply: Reply, body: dict[str, Any]) -> tuple[int, str]:
    if reply.kind == "status":
        return reply.status, reply.content
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    finish = "stop"
    if reply.kind == "refusal":
        message = {"role": "assistant", "content": None, "refusal": reply.content}
    elif reply.kind == "length":
        finish = "length"
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _usage(reply),
    }
    return 200, json.dumps(payload)


def _responses_payload(reply: Reply, body: dict[str, Any]) -> tuple[int, str]:
    if reply.kind == "status":
        return reply.status, reply.content
    if reply.kind == "refusal":
        part: dict[str, Any] = {"type": "refusal", "refusal": reply.content}
    else:
        part = {"type": "output_text", "text": reply.content, "annotations": []}
    payload = {
        "id": "resp-fake",
        "object": "response",
        "created_at": int(time.time()),
        "model": body.get("model", "fake"),
        "status": "incomplete" if reply.kind == "length" else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if reply.kind == "length" else None,
        "output": [
            {
                "type": "message",
                "id": "msg-fake",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        ],
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "output_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }
    return 200, json.dumps(payload)
