"""A scripted OpenAI-compatible HTTP server for tests, with fault injection.

Every package tests retries, resume and accounting against real HTTP with this server instead
of mocking the client::

    with ScriptedServer(reply=lambda req: "hello world") as server:
        client = OpenAIChatClient(base_url=server.base_url, model="test")
        ...
    server.calls  # every request body, in order

Faults come from an explicit ``script`` (one entry per request, consumed in order) and/or a
seeded random ``fault_rate`` over ``fault_kinds``. Each request is answered from ``reply``,
a function of the request body that returns the text (or a :class:`Reply`).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Fault(StrEnum):
    """What the server does instead of (or before) answering normally."""

    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    UNAVAILABLE = "unavailable"  # 503
    SLOW = "slow"  # waits ``slow_s`` then answers normally
    MALFORMED = "malformed"  # 200 with a body that is not JSON
    TRUNCATED = "truncated"  # a stream (or body) that stops halfway, no [DONE]
    BAD_REQUEST = "bad_request"  # 400 "context length exceeded": not worth a retry
    NONE = "none"  # answer normally


@dataclass
class Reply:
    """A scripted answer: text, why it stopped, and optional cached prompt tokens."""

    text: str
    finish_reason: str | None = None
    cached_tokens: int = 0


def _default_reply(request: dict[str, Any]) -> str:
    n = int(request.get("max_tokens") or 16)
    return " ".join(f"word{i}" for i in range(n))


class ScriptedServer:
    """OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models`` on 127.0.0.1."""

    def __init__(
        self,
        reply: Callable[[dict[str, Any]], str | Reply] = _default_reply,
        *,
        script: Iterable[Fault | str] = (),
        fault_rate: float = 0.0,
        fault_kinds: Iterable[Fault] = (Fault.RATE_LIMIT, Fault.UNAVAILABLE, Fault.MALFORMED, Fault.TRUNCATED),
        seed: int = 0,
        slow_s: float = 2.0,
        retry_after_s: float = 0.05,
        model: str = "scripted",
        host: str = "127.0.0.1",
    ) -> None:
        self.reply = reply
        self.script = [Fault(f) for f in script]
        self.fault_rate = fault_rate
        self.fault_kinds = list(fault_kinds)
        self.rng = random.Random(seed)
        self.slow_s = slow_s
        self.retry_after_s = retry_after_s
        self.model = model
        self.calls: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def completed(self) -> int:
        """Requests answered normally (what a client was actually billed for)."""
        return sum(1 for f in self.faults if f in (Fault.NONE, Fault.SLOW))

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="scripted-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_fault(self) -> Fault:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            if self.fault_rate and self.rng.random() < self.fault_rate:
                return self.rng.choice(self.fault_kinds)
            return Fault.NONE

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    body = {"object": "list", "data": [{"id": server.model, "object": "model", "owned_by": "lw"}]}
                    self._send(200, json.dumps(body).encode())
                elif self.path.rstrip("/") in ("/health", "/v1/health"):
                    self._send(200, b'{"status": "ok"}')
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    request = json.loads(raw)
                except ValueError:  # a client killed mid-send: the request never reached "the model"
                    self.close_connection = True
                    return
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                fault = server._next_fault()
                with server._lock:
                    server.calls.append(request)
                    server.faults.append(fault)
                if fault is Fault.RATE_LIMIT:
                    self._send(
                        429, b'{"error": {"message": "rate limited"}}', {"Retry-After": str(server.retry_after_s)}
                    )
                    return
                if fault is Fault.BAD_REQUEST:
                    self._send(400, b'{"error": {"message": "maximum context length exceeded"}}')
                    return
                if fault is Fault.UNAVAILABLE:
                    self._send(503, b'{"error": {"message": "overloaded"}}')
                    return
                if fault is Fault.MALFORMED:
                    self._send(200, b'{"id": "x", "choices": [ this is not json')
                    return
                if fault is Fault.SLOW:
                    time.sleep(server.slow_s)
                reply = server.reply(request)
                if isinstance(reply, str):
                    reply = Reply(reply)
                words = reply.text.split(" ")
                max_tokens = request.get("max_tokens")
                finish = reply.finish_reason or "stop"
                text = reply.text
                if max_tokens is not None and len(words) > max_tokens:
                    text, finish = " ".join(words[:max_tokens]), "length"
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
                usage: dict[str, Any] = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(text.split()),
                    "total_tokens": prompt_tokens + len(text.split()),
                    "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
                }
                if request.get("stream"):
                    self._stream(text, finish, usage, truncated=fault is Fault.TRUNCATED)
                    return
                body = {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request.get("model", server.model),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                    ],
                    "usage": usage,
                }
                data = json.dumps(body).encode()
                if fault is Fault.TRUNCATED:  # announce the full length, send half, hang up
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send(200, data)

            def _stream(self, text: str, finish: str, usage: dict[str, Any], truncated: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                pieces = [p + " " for p in text.split(" ")]
                if pieces:
                    pieces[-1] = pieces[-1][:-1]
                if truncated:
                    pieces = pieces[: max(1, len(pieces) // 2)]
                for piece in pieces:
                    self._event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                if truncated:
                    self.wfile.flush()
                    return
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                self._event({"choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, payload: dict[str, Any]) -> None:
                payload = {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": server.model,
                    **payload,
                }
                self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

        return Handler
