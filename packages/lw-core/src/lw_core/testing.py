"""A scripted OpenAI-compatible HTTP server for tests, with fault injection.

Every package tests retries, resume and accounting against real HTTP with this server instead
of mocking the client::

    with ScriptedServer(reply=lambda req: "hello world") as server:
        client = OpenAIChatClient(base_url=server.base_url, model="test")
        ...
    server.calls  # every request body, in order

Faults come from an explicit ``script`` (one entry per request, consumed in order) and/or a
seeded random ``fault_rate`` over ``fault_kinds``. Each request is answered from ``reply``,
a function of the request body that returns the text (or a :class:`Reply`). Streams are sent
with chunked transfer encoding, as real servers send them, so the faults that break a stream
(``CUT``, ``RESET``, ``STALL``) reach the client as they would from a real server.

>>> import httpx
>>> with ScriptedServer(reply=lambda request: "hi there", script=["unavailable"]) as server:
...     url = server.base_url + "/chat/completions"
...     body = {"model": "m", "messages": [{"role": "user", "content": "Hello"}]}
...     first, second = httpx.post(url, json=body), httpx.post(url, json=body)
>>> first.status_code, second.json()["choices"][0]["message"]["content"], server.faults
(503, 'hi there', [<Fault.UNAVAILABLE: 'unavailable'>, <Fault.NONE: 'none'>])
"""

from __future__ import annotations

import io
import json
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: llama-server's answer to a prompt longer than a slot's context (llama.cpp b114xx, measured).
_CONTEXT_EXCEEDED = json.dumps(
    {
        "error": {
            "code": 400,
            "message": "request (9000 tokens) exceeds the available context size (8192 tokens), try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 9000,
            "n_ctx": 8192,
        }
    }
).encode()


class Fault(StrEnum):
    """What the server does instead of (or before) answering normally."""

    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    UNAVAILABLE = "unavailable"  # 503
    SLOW = "slow"  # waits ``slow_s`` then answers normally
    MALFORMED = "malformed"  # 200 with a body (or a stream event) that is not JSON
    TRUNCATED = "truncated"  # a stream (or body) that ends cleanly halfway: no finish_reason, no [DONE]
    CUT = "cut"  # a chunked body cut mid-chunk, connection closed: the client sees a protocol error
    RESET = "reset"  # half the body, then the connection is reset (TCP RST): the client sees a read error
    STALL = "stall"  # headers (and half a stream), then silence for ``stall_s`` without closing
    BAD_REQUEST = "bad_request"  # 400 "exceeds the available context size" (llama.cpp's body): not worth a retry
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


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-answer (it gave up, or was killed) is what tests do: no traceback for it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


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
        stall_s: float = 30.0,
        token_interval_s: float = 0.0,
        retry_after_s: float | str = 0.05,
        model: str = "scripted",
        host: str = "127.0.0.1",
    ) -> None:
        self.reply = reply
        self.script = [Fault(f) for f in script]
        self.fault_rate = fault_rate
        self.fault_kinds = list(fault_kinds)
        self.rng = random.Random(seed)
        self.slow_s = slow_s
        self.stall_s = stall_s
        self.token_interval_s = token_interval_s  # a slow but live server: the pause before each streamed piece
        self.retry_after_s = retry_after_s  # seconds, or an HTTP date (a str) sent as it is
        self.model = model
        self.calls: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _QuietServer((host, 0), self._handler())
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
        self._stopping.set()  # ends stalls at once
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
                    self._send(400, _CONTEXT_EXCEEDED)
                    return
                if fault is Fault.UNAVAILABLE:
                    self._send(503, b'{"error": {"message": "overloaded"}}')
                    return
                if fault is Fault.MALFORMED and not request.get("stream"):
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
                    self._stream(text, finish, usage, fault)
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
                half = data[: len(data) // 2]
                if fault is Fault.TRUNCATED:  # announce the full length, send half, hang up
                    self._headers("application/json", length=len(data))
                    self.wfile.write(half)
                    self._hang_up()
                elif fault is Fault.STALL:
                    self._headers("application/json", length=len(data))
                    self._stall()
                elif fault in (Fault.CUT, Fault.RESET):
                    self._headers("application/json")
                    self._chunk(half)
                    self._break(fault)
                else:
                    self._send(200, data)

            def _stream(self, text: str, finish: str, usage: dict[str, Any], fault: Fault) -> None:
                self._headers("text/event-stream")
                pieces = [p + " " for p in text.split(" ")]
                pieces[-1] = pieces[-1][:-1]
                if fault in (Fault.TRUNCATED, Fault.CUT, Fault.RESET, Fault.STALL):
                    pieces = pieces[: max(1, len(pieces) // 2)]
                if fault is Fault.MALFORMED:
                    self._chunk(b'data: {"choices": [ this is not json\n\n')
                for piece in pieces:
                    server._stopping.wait(server.token_interval_s)
                    self._event({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                if fault is Fault.TRUNCATED:  # a clean end of the body, without finish_reason or [DONE]
                    self._chunk(b"")
                    return
                if fault is Fault.STALL:
                    self._stall()
                    return
                if fault in (Fault.CUT, Fault.RESET):
                    self._break(fault)
                    return
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                self._event({"choices": [], "usage": usage})
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _headers(self, content_type: str, length: int | None = None) -> None:
                """Status 200 and headers; without a length the body is sent in chunks (as SSE streams are)."""
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                if length is None:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def _chunk(self, data: bytes) -> None:
                """One chunk of a chunked body (the empty chunk ends the body)."""
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _event(self, payload: dict[str, Any]) -> None:
                payload = {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": server.model,
                    **payload,
                }
                self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

            def _break(self, fault: Fault) -> None:
                """CUT: announce a chunk, send half of it and close; RESET: abort the connection with a TCP RST."""
                if fault is Fault.CUT:
                    self.wfile.write(b"40\r\n" + b"data: {" + b"x" * 20)  # 0x40 bytes announced, 28 sent
                    self._hang_up()
                    return
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._hang_up()

            def _stall(self) -> None:
                self.wfile.flush()
                server._stopping.wait(server.stall_s)
                self._hang_up()

            def _hang_up(self) -> None:
                """Close the connection now (the socket's file objects too, or closing it would wait for them)."""
                self.wfile.flush()
                self.close_connection = True
                self.rfile.close()
                self.wfile.close()
                self.connection.close()
                self.wfile = io.BytesIO()  # what the base handler still flushes after us

        return Handler
