"""SGLang's offline ``sglang.Engine`` behind the :class:`~lw_core.ChatClient` protocol.

For one-machine batch jobs (generate a data set, run a benchmark) an HTTP hop buys nothing: the
engine runs in this process and the stages that take a ``ChatClient`` never know the difference.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lw_core import Capabilities, ChatMessage, ClientError, Completion, MessageLike, Usage

from lw_serve.backends import SGLangBackend
from lw_serve.models import ResolvedModel, resolve_model


def engine_kwargs(backend: SGLangBackend, model_path: str, served_name: str) -> dict[str, Any]:
    """The ``sglang.Engine`` arguments equivalent to ``backend``'s ``launch_server`` flags."""
    kwargs: dict[str, Any] = {
        "model_path": model_path,
        "served_model_name": served_name,
        "context_length": backend.context_length,
        "tp_size": backend.tp_size,
        "dp_size": backend.dp_size,
        "dtype": backend.dtype,
        "enable_cache_report": backend.enable_cache_report,
    }
    if backend.chat_template:
        kwargs["chat_template"] = backend.chat_template
    if backend.mem_fraction_static is not None:
        kwargs["mem_fraction_static"] = backend.mem_fraction_static
    if backend.max_running_requests:
        kwargs["max_running_requests"] = backend.max_running_requests
    return kwargs


def sampling_params(
    *,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: Sequence[str] | None,
    response_format: dict[str, Any] | None,
) -> dict[str, Any]:
    """OpenAI-style request options → SGLang sampling parameters (JSON schema as a string)."""
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    if top_p is not None:
        params["top_p"] = top_p
    if stop:
        params["stop"] = list(stop)
    if response_format:
        kind = response_format.get("type")
        if kind == "json_schema":
            params["json_schema"] = json.dumps(response_format["json_schema"]["schema"])
        elif kind == "json_object":
            params["json_schema"] = json.dumps({"type": "object"})
        elif kind != "text":
            raise ClientError(f"unsupported response_format type {kind!r}: use json_schema, json_object or text")
    return params


def completion_from_output(output: dict[str, Any], model: str) -> Completion:
    """An ``Engine.async_generate`` result → :class:`~lw_core.Completion`."""
    meta = output.get("meta_info", {})
    finish = meta.get("finish_reason")
    reason = finish.get("type") if isinstance(finish, dict) else finish
    if reason == "abort":
        raise ClientError(f"sglang engine ({model}) aborted the request: {finish}")
    usage = Usage(
        prompt_tokens=int(meta.get("prompt_tokens", 0)),
        completion_tokens=int(meta.get("completion_tokens", 0)),
        cached_tokens=int(meta.get("cached_tokens", 0) or 0),
        calls=1,
    )
    return Completion(text=output.get("text", ""), finish_reason=reason, usage=usage, model=model)


@dataclass
class SGLangEngineClient:
    """A :class:`~lw_core.ChatClient` over an in-process ``sglang.Engine`` (GPU only).

    >>> with SGLangEngineClient.start("smollm2-135m-instruct") as client:  # doctest: +SKIP
    ...     run_sync(client.complete([{"role": "user", "content": "Hi"}], max_tokens=8)).text
    """

    engine: Any
    tokenizer: Any
    model: str
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(json_schema=True, cached_tokens=True,
                                                                            concurrency=64))  # fmt: skip

    @classmethod
    def start(
        cls, model: str | os.PathLike[str] | ResolvedModel, backend: SGLangBackend | None = None, **overrides: Any
    ) -> SGLangEngineClient:
        backend = backend or SGLangBackend()
        backend.check_available()
        resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
        import sglang  # type: ignore[import-not-found,unused-ignore]
        from transformers import AutoTokenizer

        path = resolved.hf_folder()
        kwargs = engine_kwargs(backend, path, resolved.name) | overrides
        return cls(sglang.Engine(**kwargs), AutoTokenizer.from_pretrained(path), resolved.name, backend.capabilities)

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
        chat = [m.model_dump() if isinstance(m, ChatMessage) else dict(m) for m in messages]
        prompt = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        params = sampling_params(max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop,
                                 response_format=response_format)  # fmt: skip
        if not stream:
            return completion_from_output(await self.engine.async_generate(prompt, params), self.model)
        text, last = "", {}
        async for chunk in await self.engine.async_generate(prompt, params, stream=True):
            piece = chunk.get("text", "")
            new = piece[len(text) :] if piece.startswith(text) else piece  # cumulative or incremental chunks
            text += new
            if new and on_text is not None:
                on_text(new)
            last = chunk
        return completion_from_output({**last, "text": text}, self.model)

    def shutdown(self) -> None:
        self.engine.shutdown()

    def __enter__(self) -> SGLangEngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
