"""SGLang for real: only where a CUDA GPU and sglang are present (skipped on CPU by the root conftest)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os

import pytest
from lw_core import DIMENSIONS, json_schema_format, run_sync
from lw_serve import EMBEDDED_MODEL, Server, SGLangBackend
from lw_serve.engine import SGLangEngineClient

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("sglang") is None, reason="needs lw-serve[sglang]"),
]
SCHEMA = {
    "type": "object",
    "properties": {d: {"type": "integer", "minimum": 1, "maximum": 5} for d in DIMENSIONS},
    "required": list(DIMENSIONS),
}


async def test_sglang_server_chat_stream_concurrency_and_json() -> None:
    with Server(EMBEDDED_MODEL, SGLangBackend(context_length=8192, mem_fraction_static=0.5), startup_timeout=900) as s:
        client = s.client
        done = await client.complete([{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0.0)
        assert done.finish_reason == "length" and done.usage.completion_tokens == 8
        streamed = await client.complete([{"role": "user", "content": "Hello"}], max_tokens=8, stream=True)
        assert streamed.text and streamed.usage.completion_tokens == 8
        many = await asyncio.gather(*(client.complete([{"role": "user", "content": f"Count to {i}"}], max_tokens=6)
                                      for i in range(4)))  # fmt: skip
        assert all(r.usage.completion_tokens == 6 for r in many)
        judged = await client.complete([{"role": "user", "content": "Rate: 'The sea.'"}], max_tokens=100,
                                       response_format=json_schema_format("judgment", SCHEMA))  # fmt: skip
        assert set(json.loads(judged.text)) == set(DIMENSIONS)
        pids = s.pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_sglang_engine_in_process() -> None:
    with SGLangEngineClient.start(EMBEDDED_MODEL, SGLangBackend(context_length=8192, mem_fraction_static=0.5)) as c:
        done = await c.complete([{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0.0)
        assert done.finish_reason == "length" and done.usage.completion_tokens == 8


def test_sglang_replicas_behind_the_router() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() < 2 or importlib.util.find_spec("sglang_router") is None:
        pytest.skip("needs 2 GPUs and sglang-router")
    backend = SGLangBackend(replicas=2, context_length=8192, mem_fraction_static=0.5)
    with Server(EMBEDDED_MODEL, backend, startup_timeout=900) as server:
        assert len(server.pids) == 3
        done = run_sync(server.client.complete([{"role": "user", "content": "Hi"}], max_tokens=4))
        assert done.usage.completion_tokens == 4
