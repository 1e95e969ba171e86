"""The in-process SGLang engine client: argument mapping and output translation (a fake engine on CPU)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lw_core import ChatClient, ClientError, json_schema_format
from lw_serve import SGLangBackend
from lw_serve.engine import SGLangEngineClient, engine_kwargs, sampling_params


def test_engine_kwargs_mirror_the_server_flags() -> None:
    backend = SGLangBackend(
        context_length=16384,
        chat_template="chatml",
        mem_fraction_static=0.7,
        tp_size=2,
        dp_size=4,
        dtype="bfloat16",
        max_running_requests=32,
        enable_cache_report=True,
    )
    assert engine_kwargs(backend, "/m", "writer") == {
        "model_path": "/m", "served_model_name": "writer", "context_length": 16384, "tp_size": 2, "dp_size": 4,
        "dtype": "bfloat16", "enable_cache_report": True, "chat_template": "chatml", "mem_fraction_static": 0.7,
        "max_running_requests": 32,
    }  # fmt: skip
    minimal = engine_kwargs(SGLangBackend(mem_fraction_static=None), "/m", "w")
    assert "chat_template" not in minimal and "mem_fraction_static" not in minimal


def test_sampling_params_translate_openai_options() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    params = sampling_params(max_tokens=12, temperature=0.5, top_p=0.9, stop=["\n\n"],
                             response_format=json_schema_format("x", schema))  # fmt: skip
    assert params == {"max_new_tokens": 12, "temperature": 0.5, "top_p": 0.9, "stop": ["\n\n"],
                      "json_schema": json.dumps(schema)}  # fmt: skip
    assert sampling_params(
        max_tokens=None, temperature=None, top_p=None, stop=None, response_format={"type": "json_object"}
    ) == {"json_schema": '{"type": "object"}'}
    with pytest.raises(ClientError, match="regex"):
        sampling_params(max_tokens=None, temperature=None, top_p=None, stop=None, response_format={"type": "regex"})


class FakeEngine:
    """Answers like ``sglang.Engine.async_generate``; streams cumulative text as SGLang does by default."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def async_generate(self, prompt: str, params: dict[str, Any], stream: bool = False) -> Any:
        self.calls.append((prompt, params))
        meta = {"prompt_tokens": 20, "completion_tokens": 3, "cached_tokens": 16, "finish_reason": {"type": "length"}}
        if not stream:
            return {"text": "one two three", "meta_info": meta}

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for text in ("one", "one two", "one two three"):
                yield {"text": text, "meta_info": meta}

        return chunks()

    def shutdown(self) -> None:
        self.calls.append(("shutdown", {}))


class FakeTokenizer:
    def apply_chat_template(self, chat: list[dict[str, str]], tokenize: bool, add_generation_prompt: bool) -> str:
        return "|".join(f"{m['role']}:{m['content']}" for m in chat) + "|assistant:"


async def test_engine_client_completes_and_streams() -> None:
    engine = FakeEngine()
    with SGLangEngineClient(engine, FakeTokenizer(), "writer") as client:
        assert isinstance(client, ChatClient)
        done = await client.complete([{"role": "user", "content": "hi"}], max_tokens=3)
        assert (done.text, done.finish_reason, done.model) == ("one two three", "length", "writer")
        assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.cached_tokens) == (20, 3, 16)
        assert engine.calls[0] == ("user:hi|assistant:", {"max_new_tokens": 3})
        pieces: list[str] = []
        streamed = await client.complete([{"role": "user", "content": "hi"}], stream=True, on_text=pieces.append)
        assert pieces == ["one", " two", " three"] and streamed.text == "one two three"
    assert engine.calls[-1][0] == "shutdown"


async def test_aborted_request_is_a_client_error() -> None:
    class Aborting(FakeEngine):
        async def async_generate(self, prompt: str, params: dict[str, Any], stream: bool = False) -> Any:
            return {"text": "", "meta_info": {"finish_reason": {"type": "abort", "message": "too long"}}}

    client = SGLangEngineClient(Aborting(), FakeTokenizer(), "w")
    with pytest.raises(ClientError, match="too long"):
        await client.complete([{"role": "user", "content": "hi"}])
