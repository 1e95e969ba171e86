"""One LLM client for every stage: any OpenAI-compatible endpoint behind a small protocol.

OpenAI, SGLang, vLLM, llama.cpp and ``transformers serve`` differ only in ``base_url``, the
model name, and what they support (:class:`Capabilities`). Callers depend on the
:class:`ChatClient` protocol, so tests can pass a fake and apps can pass their own.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import math
import random
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import httpx
import openai

from lw_core.errors import ClientError
from lw_core.schemas import ChatMessage, MessageLike, Usage

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Statuses worth another attempt (the set the ``openai`` client retries): timeout, conflict, rate limit, 5xx.
RETRY_STATUSES = frozenset({408, 409, 429})


@dataclass(frozen=True)
class Capabilities:
    """What the server behind a client can do; callers adapt (e.g. ask for JSON only if supported)."""

    json_schema: bool = False
    cached_tokens: bool = False
    concurrency: int = 1


@dataclass(frozen=True)
class Completion:
    """The text of one chat completion, why it stopped, and its token usage.

    >>> Completion("Once upon a", "length", Usage(completion_tokens=3, calls=1)).truncated
    True
    """

    text: str
    finish_reason: str | None
    usage: Usage
    model: str | None = None

    @property
    def truncated(self) -> bool:
        """True when the output was cut by ``max_tokens`` or the context length."""
        return self.finish_reason == "length"


@runtime_checkable
class ChatClient(Protocol):
    """The one interface every package uses to talk to a model."""

    model: str
    capabilities: Capabilities

    async def complete(
        self,
        messages: Sequence[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        response_format: dict[str, Any] | None = None,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion: ...


class _Retryable(Exception):
    """One failed attempt worth another: a retryable status, a transport error, a stall or a broken body."""

    def __init__(self, reason: str, *, status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.status_code, self.retry_after = status_code, retry_after


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The ``response_format`` that asks an OpenAI-compatible server for JSON valid against ``schema``.

    >>> json_schema_format("verdict", {"type": "object"})["json_schema"]["strict"]
    True
    """
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def retry_after_s(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds a response asks the client to wait: ``Retry-After`` in seconds or as an HTTP date (or ``-ms``).

    >>> retry_after_s(httpx.Headers({"Retry-After": "2"}))
    2.0
    >>> retry_after_s(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}), now=1445412480.0)
    10.0
    >>> retry_after_s(httpx.Headers({})) is None
    True
    """
    millis = headers.get("retry-after-ms")
    value = headers.get("retry-after")
    try:
        if millis is not None:
            seconds = float(millis) / 1000
        elif value is None:
            return None
        else:
            seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value or "").timestamp() - (now or time.time())
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _read_chunk(chunk: Any) -> tuple[str, str | None, Usage | None, str | None]:
    """(text, finish_reason, usage, model) of one stream chunk; a chunk of the wrong shape is a broken response."""
    try:
        usage = _usage(chunk.usage, chunk.model_extra) if chunk.usage is not None else None
        text, reason = "", None
        for choice in chunk.choices or ():
            if choice.delta is not None and choice.delta.content:
                text += choice.delta.content
            reason = choice.finish_reason or reason
        return text, reason, usage, chunk.model
    except (AttributeError, TypeError, ValueError) as exc:
        raise _Retryable(f"broken response: a stream chunk of the wrong shape ({exc})") from None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client: each new one loads the CA bundle again (~0.8 MB that is not given back),
    so a program that makes a client per task (``Server.client`` does) would grow by that much per client."""
    return httpx.create_ssl_context()


def _as_dict(message: MessageLike) -> dict[str, str]:
    return message.model_dump() if isinstance(message, ChatMessage) else dict(message)


def _usage(raw: Any, extra: dict[str, Any] | None) -> Usage:
    if raw is None:
        return Usage(calls=1)
    cached = 0
    details = getattr(raw, "prompt_tokens_details", None)
    if details is not None and getattr(details, "cached_tokens", None):
        cached = int(details.cached_tokens)
    elif extra and isinstance(extra.get("timings"), dict):  # llama.cpp reports its prompt cache here
        cached = int(extra["timings"].get("cache_n") or 0)
    return Usage(
        prompt_tokens=int(raw.prompt_tokens or 0),
        completion_tokens=int(raw.completion_tokens or 0),
        cached_tokens=cached,
        calls=1,
    )


@dataclass
class OpenAIChatClient:
    """:class:`ChatClient` over the official ``openai`` package, for any compatible endpoint.

    **One retry layer.** The ``openai`` client's own retries are off; this client retries every failure worth it
    (429/408/409/5xx honouring ``Retry-After``, refused or reset connections, streams cut mid-body, stalls,
    garbage bodies) with exponential backoff and jitter, ``max_retries`` times, so one :meth:`complete` makes at
    most ``max_retries + 1`` HTTP attempts. Other 4xx (e.g. "maximum context length exceeded") fail at once.
    Either way a :class:`ClientError` says ``status_code``, ``retryable`` and ``attempts``.

    **No timeout for live servers.** Every request is streamed internally, so a generation may take as long as it
    takes while tokens keep coming: ``timeout`` bounds the wait for the first token (connecting, queueing, reading
    the prompt), ``stall_timeout`` the silence between tokens after that. When an attempt is retried, ``on_text``
    sees the new attempt's text from its beginning. ``concurrency`` bounds in-flight requests. The API key is never
    logged, printed or written.

    >>> client = OpenAIChatClient(base_url="http://127.0.0.1:8000/v1", model="smollm2-135m-instruct")
    >>> client
    OpenAIChatClient(base_url='http://127.0.0.1:8000/v1', model='smollm2-135m-instruct')
    >>> client.max_retries + 1  # HTTP attempts at most
    7
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 600.0
    stall_timeout: float = 120.0
    max_retries: int = 6
    concurrency: int = 8
    capabilities: Capabilities = field(default_factory=Capabilities)
    extra_body: dict[str, Any] = field(default_factory=dict)
    backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    _client: openai.AsyncOpenAI | None = field(default=None, init=False, repr=False)
    _semaphore: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    def __repr__(self) -> str:
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def openai(self) -> openai.AsyncOpenAI:
        """The underlying ``openai`` client: its retries are off (``max_retries=0``) and its timeouts are ours."""
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key or "EMPTY",
                timeout=None,
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context(), timeout=None),
            )
        return self._client

    async def complete(
        self,
        messages: Sequence[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        response_format: dict[str, Any] | None = None,
        stream: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """One chat completion; ``on_text`` (with ``stream=True``) receives the text as it arrives."""
        params: dict[str, Any] = {"model": self.model, "messages": [_as_dict(m) for m in messages]}
        for key, value in (
            ("max_tokens", max_tokens),
            ("temperature", temperature),
            ("top_p", top_p),
            ("stop", list(stop) if stop else None),
            ("response_format", response_format),
        ):
            if value is not None:
                params[key] = value
        if self.extra_body:
            params["extra_body"] = dict(self.extra_body)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        async with self._semaphore:
            return await self._with_retries(params, on_text if stream else None)

    async def _with_retries(self, params: dict[str, Any], on_text: Callable[[str], None] | None) -> Completion:
        where = f"{self.base_url} (model {self.model!r})"
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(params, on_text)
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUSES and exc.status_code < 500:
                    raise ClientError(
                        f"{where}: HTTP {exc.status_code}: {_error_text(exc)}",
                        status_code=exc.status_code,
                        attempts=attempt,
                    ) from exc
                failure = _Retryable(
                    f"HTTP {exc.status_code}: {_error_text(exc)}",
                    status_code=exc.status_code,
                    retry_after=retry_after_s(exc.response.headers),
                )
            except _Retryable as exc:
                failure = exc
            wait = failure.retry_after
            if wait is not None and wait > self.max_backoff_s:
                raise ClientError(
                    f"{where}: {failure} after {attempt} attempts; the server asks to wait {wait:.0f} s, more than "
                    f"max_backoff_s={self.max_backoff_s:g}: try again later",
                    status_code=failure.status_code,
                    retryable=True,
                    attempts=attempt,
                ) from failure
            if attempt == attempts:
                raise ClientError(
                    f"{where}: request failed after {attempt} attempts: {failure}",
                    status_code=failure.status_code,
                    retryable=True,
                    attempts=attempt,
                ) from failure
            if wait is None:
                wait = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random())
            log.info("%s: attempt %d/%d failed (%s); retrying in %.2f s", where, attempt, attempts, failure, wait)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _attempt(self, params: dict[str, Any], on_text: Callable[[str], None] | None) -> Completion:
        """One streamed HTTP attempt; every failure worth a retry comes out as :class:`_Retryable`."""
        parts: list[str] = []
        finish_reason: str | None = None
        usage: Usage | None = None
        model: str | None = None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                stream = await self.openai.chat.completions.create(
                    **params, stream=True, stream_options={"include_usage": True}
                )
                try:
                    async for chunk in stream:
                        text, reason, chunk_usage, chunk_model = _read_chunk(chunk)
                        model = chunk_model or model
                        usage = chunk_usage or usage
                        finish_reason = reason or finish_reason
                        if text:
                            parts.append(text)
                            if on_text is not None:
                                on_text(text)
                        if parts or finish_reason:  # the reply has begun: from now on only silence counts
                            deadline.reschedule(loop.time() + self.stall_timeout)
                finally:
                    await stream.close()
        except TimeoutError:
            if parts or finish_reason:
                raise _Retryable(f"stalled: no token for {self.stall_timeout:g} s (stall_timeout)") from None
            raise _Retryable(f"no reply within {self.timeout:g} s (timeout)") from None
        except (openai.APIConnectionError, httpx.TransportError) as exc:  # refused, reset, cut mid-body
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        except openai.APIStatusError:
            raise
        except (openai.APIError, json.JSONDecodeError) as exc:  # an error event or garbage in the stream
            raise _Retryable(f"broken response: {type(exc).__name__}: {exc}") from exc
        if finish_reason is None:
            raise _Retryable("the stream ended before a finish_reason")
        return Completion("".join(parts), finish_reason, usage or Usage(calls=1), model)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            if "n_prompt_tokens" in inner and "n_ctx" in inner:  # llama.cpp: a prompt longer than a slot's context
                return (
                    f"the request needs {inner['n_prompt_tokens']} tokens of context and the server holds "
                    f"{inner['n_ctx']} per request: start it with a larger context (lw reproduce: the endpoint's "
                    "context_length; lw-serve up --ctx-size; LlamaCppBackend(ctx_size=...)) or send a shorter prompt"
                )
            return str(inner.get("message", inner))
        return str(inner)
    return str(exc.message)


class SyncChatClient:
    """Blocking facade over an async :class:`ChatClient` for scripts and notebooks.

    Runs one private event loop in a daemon thread, so it also works inside programs that
    already run an event loop (where ``asyncio.run`` would fail).
    """

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="lw-sync-client")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        """Run any coroutine on the private loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def complete(self, messages: Sequence[MessageLike], **kwargs: Any) -> Completion:
        return self.run(self.client.complete(messages, **kwargs))

    def close(self) -> None:
        if self._loop.is_running():
            closer = getattr(self.client, "aclose", None)
            if closer is not None:
                self.run(closer())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> SyncChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]
