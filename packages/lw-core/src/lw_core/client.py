"""One LLM client for every stage: any OpenAI-compatible endpoint behind a small protocol.

OpenAI, SGLang, vLLM, llama.cpp and ``transformers serve`` differ only in ``base_url``, the
model name, and what they support (:class:`Capabilities`). Callers depend on the
:class:`ChatClient` protocol, so tests can pass a fake and apps can pass their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import openai

from lw_core.errors import ClientError
from lw_core.schemas import ChatMessage, Usage

log = logging.getLogger(__name__)
T = TypeVar("T")
MessageLike = ChatMessage | dict[str, str]


@dataclass(frozen=True)
class Capabilities:
    """What the server behind a client can do; callers adapt (e.g. ask for JSON only if supported)."""

    json_schema: bool = False
    cached_tokens: bool = False
    concurrency: int = 1


@dataclass(frozen=True)
class Completion:
    """The text of one chat completion, why it stopped, and its token usage."""

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


class TransientResponseError(ClientError):
    """A response that arrived broken (garbage body, stream cut before its end): worth a retry."""


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The ``response_format`` that asks an OpenAI-compatible server for JSON valid against ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


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

    HTTP-level failures (429 honouring ``Retry-After``, 5xx, timeouts, refused connections) are
    retried by the ``openai`` client (``max_retries``); broken bodies and cut streams are retried
    here (``retries``) with exponential backoff. ``concurrency`` bounds in-flight requests.
    The API key is never logged, printed or written.

    >>> client = OpenAIChatClient(base_url="http://127.0.0.1:8000/v1", model="smollm2-135m-instruct")
    >>> client
    OpenAIChatClient(base_url='http://127.0.0.1:8000/v1', model='smollm2-135m-instruct')
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 600.0
    max_retries: int = 6
    retries: int = 4
    concurrency: int = 8
    capabilities: Capabilities = field(default_factory=Capabilities)
    extra_body: dict[str, Any] = field(default_factory=dict)
    backoff_s: float = 0.5
    _client: openai.AsyncOpenAI | None = field(default=None, init=False, repr=False)
    _semaphore: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    def __repr__(self) -> str:
        return f"OpenAIChatClient(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def openai(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key or "EMPTY",
                timeout=self.timeout,
                max_retries=self.max_retries,
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
            return await self._with_retries(params, stream, on_text)

    async def _with_retries(
        self, params: dict[str, Any], stream: bool, on_text: Callable[[str], None] | None
    ) -> Completion:
        for attempt in range(self.retries + 1):
            try:
                if stream:
                    return await self._stream(params, on_text)
                return await self._once(params)
            except (
                TransientResponseError,
                openai.APIResponseValidationError,
                json.JSONDecodeError,
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as exc:
                if attempt == self.retries:
                    raise ClientError(
                        f"{self.base_url} (model {self.model!r}): request failed after "
                        f"{attempt + 1} attempts: {type(exc).__name__}: {exc}",
                        status_code=getattr(exc, "status_code", None),
                        retryable=True,
                        attempts=attempt + 1,
                    ) from exc
                delay = self.backoff_s * 2**attempt * (0.5 + random.random())
                log.info("retrying in %.2fs after %s", delay, type(exc).__name__)
                await asyncio.sleep(delay)
            except openai.APIStatusError as exc:
                raise ClientError(
                    f"{self.base_url} (model {self.model!r}): HTTP {exc.status_code}: {_error_text(exc)}",
                    status_code=exc.status_code,
                    attempts=attempt + 1,
                ) from exc
        raise AssertionError("unreachable")

    async def _once(self, params: dict[str, Any]) -> Completion:
        response = await self.openai.chat.completions.create(**params)
        if not getattr(response, "choices", None):
            raise TransientResponseError(f"{self.base_url}: response without choices")
        choice = response.choices[0]
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason,
            usage=_usage(response.usage, response.model_extra),
            model=response.model,
        )

    async def _stream(self, params: dict[str, Any], on_text: Callable[[str], None] | None) -> Completion:
        parts: list[str] = []
        finish_reason: str | None = None
        usage: Usage | None = None
        model: str | None = None
        stream = await self.openai.chat.completions.create(
            **params, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            model = chunk.model or model
            if chunk.usage is not None:
                usage = _usage(chunk.usage, chunk.model_extra)
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    parts.append(choice.delta.content)
                    if on_text is not None:
                        on_text(choice.delta.content)
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
        if finish_reason is None:
            raise TransientResponseError(f"{self.base_url}: stream ended before a finish_reason")
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


FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
