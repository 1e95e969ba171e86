"""The real CPU servers with the embedded model, through lw-core's client (slow: real model, real processes)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lw_core import DIMENSIONS, ClientError, json_schema_format
from lw_serve import EMBEDDED_MODEL, LlamaCppBackend, Server, TransformersBackend, resolve_model
from lw_serve.backends import llamacpp_available

pytestmark = pytest.mark.slow
needs_llamacpp = pytest.mark.skipif(not llamacpp_available(), reason="needs lw-serve[llamacpp]")
HELLO = [{"role": "user", "content": "Write a short poem about the sea."}]


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module", params=["llamacpp", "transformers"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    if request.param == "llamacpp" and not llamacpp_available():
        pytest.skip("needs lw-serve[llamacpp]")
    backend = LlamaCppBackend() if request.param == "llamacpp" else TransformersBackend(continuous_batching=False)
    with Server(EMBEDDED_MODEL, backend, startup_timeout=300) as started:
        pids = started.pids
        yield started
    assert all(_pid_gone(pid) for pid in pids), "no server process is left behind"


async def test_chat_completion_honours_max_tokens(server: Server) -> None:
    completion = await server.client.complete(HELLO, max_tokens=8, temperature=0.0)
    assert completion.text.strip()
    assert completion.finish_reason == "length" and completion.truncated
    assert completion.usage.completion_tokens == 8
    assert completion.usage.prompt_tokens > 10
    assert completion.model == EMBEDDED_MODEL


async def test_streaming_delivers_the_same_text_incrementally(server: Server) -> None:
    client = server.client
    pieces: list[str] = []
    streamed = await client.complete(HELLO, max_tokens=8, temperature=0.0, stream=True, on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == streamed.text
    assert streamed.finish_reason == "length" and streamed.usage.completion_tokens == 8
    plain = await client.complete(HELLO, max_tokens=8, temperature=0.0)
    assert streamed.text == plain.text, "greedy output does not depend on streaming"


async def test_four_concurrent_requests(server: Server) -> None:
    prompts = ["a cat", "the moon", "a city at night", "winter"]
    results = await asyncio.gather(
        *(
            server.client.complete([{"role": "user", "content": f"Describe {p}."}], max_tokens=6, temperature=0.0)
            for p in prompts
        )
    )
    assert all(r.finish_reason == "length" and r.usage.completion_tokens == 6 for r in results)
    assert all(r.text.strip() for r in results)


async def test_declared_capabilities_hold(server: Server) -> None:
    """What clients are told the server can do (prompt caching, schema-constrained output) is what it does."""
    client, caps = server.client, server.capabilities
    long_prompt = [{"role": "user", "content": "Summarise: " + "The tide rises and falls with the moon. " * 30}]
    await client.complete(long_prompt, max_tokens=2, temperature=0.0)
    again = await client.complete(long_prompt, max_tokens=2, temperature=0.0)
    assert (again.usage.cached_tokens > 100) is caps.cached_tokens
    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}},
              "required": ["colour"], "additionalProperties": False}  # fmt: skip
    reply = await client.complete([{"role": "user", "content": "Tell me a short story about a cat."}], max_tokens=40,
                                  temperature=0.0, response_format=json_schema_format("pick", schema))  # fmt: skip
    try:
        honoured = set(json.loads(reply.text)) == {"colour"}
    except ValueError:
        honoured = False
    assert honoured is caps.json_schema


JUDGE_SCHEMA = {
    "type": "object",
    "properties": {d: {"type": "integer", "minimum": 1, "maximum": 5} for d in DIMENSIONS},
    "required": list(DIMENSIONS),
    "additionalProperties": False,
}


@needs_llamacpp
async def test_json_schema_output_is_valid_judge_json() -> None:
    with Server(EMBEDDED_MODEL, "llamacpp") as server:
        text = (
            "Rate this story from 1 to 5 on each dimension.\n\nStory: The sea was blue. The end.\n\n"
            f"Dimensions: {', '.join(DIMENSIONS)}. Answer in JSON."
        )
        completion = await server.client.complete(
            [{"role": "user", "content": text}],
            max_tokens=120,
            temperature=0.0,
            response_format=json_schema_format("judgment", JUDGE_SCHEMA),
        )
    scores = json.loads(completion.text)
    assert set(scores) == set(DIMENSIONS)
    assert all(isinstance(v, int) and 1 <= v <= 5 for v in scores.values())


@needs_llamacpp
async def test_request_over_the_context_length_is_a_clear_client_error() -> None:
    with Server(EMBEDDED_MODEL, LlamaCppBackend(ctx_size=256, parallel=1)) as server:
        too_long = [{"role": "user", "content": "word " * 600}]
        with pytest.raises(ClientError, match="HTTP 400") as info:
            await server.client.complete(too_long, max_tokens=8)
        assert "context" in str(info.value).lower()
        pid = server.pids[0]
    assert _pid_gone(pid)


async def test_hf_folder_is_served_under_its_own_name() -> None:
    """How lw-train outputs are served: any HF folder, answering to the name clients are given."""
    folder = resolve_model(EMBEDDED_MODEL).hf_folder()
    with Server(folder, "transformers", name="my-sft") as server:
        assert server.model_name == "my-sft"
        completion = await server.client.complete(HELLO, max_tokens=4, temperature=0.0)
        assert completion.usage.completion_tokens == 4 and completion.model == "my-sft"
        wrong = server.new_client(model=folder)
        with pytest.raises(ClientError, match="HTTP 4"):
            await wrong.complete(HELLO, max_tokens=4)


@needs_llamacpp
async def test_api_key_is_enforced_and_on_no_command_line() -> None:
    key = "sk-lw-" + secrets.token_hex(12)
    with Server(EMBEDDED_MODEL, LlamaCppBackend(api_key=key, parallel=1)) as server:
        [pid] = server.pids
        assert key not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert f"LLAMA_API_KEY={key}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        anonymous = httpx.post(f"{server.base_url}/chat/completions", json={"model": server.model_name,
                               "messages": HELLO, "max_tokens": 2}, timeout=60)  # fmt: skip
        assert anonymous.status_code == 401
        completion = await server.client.complete(HELLO, max_tokens=2, temperature=0.0)
        assert completion.usage.completion_tokens == 2
