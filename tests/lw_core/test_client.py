import asyncio
import logging
import time

import pytest
from lw_core import Capabilities, ClientError, OpenAIChatClient, SyncChatClient, json_schema_format
from lw_core.testing import Fault, Reply, ScriptedServer

MESSAGES = [{"role": "user", "content": "Say something."}]


def make_client(server: ScriptedServer, **kwargs) -> OpenAIChatClient:  # type: ignore[no-untyped-def]
    return OpenAIChatClient(base_url=server.base_url, model="m", backoff_s=0.01, **kwargs)


@pytest.mark.parametrize("stream", [False, True])
async def test_every_fault_kind_is_retried(stream: bool) -> None:
    faults = [Fault.RATE_LIMIT, Fault.UNAVAILABLE, Fault.MALFORMED, Fault.TRUNCATED]
    with ScriptedServer(reply=lambda req: "all good here", script=faults) as server:
        result = await make_client(server).complete(MESSAGES, stream=stream)
    assert result.text == "all good here" and result.finish_reason == "stop"
    assert server.faults == [*faults, Fault.NONE]


async def test_retry_after_is_honoured() -> None:
    with ScriptedServer(script=[Fault.RATE_LIMIT], retry_after_s=0.6) as server:
        start = time.perf_counter()
        await make_client(server).complete(MESSAGES, max_tokens=3)
    assert time.perf_counter() - start >= 0.55


async def test_gives_up_with_a_clear_error_after_retries() -> None:
    with ScriptedServer(script=[Fault.MALFORMED] * 10) as server:
        client = make_client(server, retries=2)
        with pytest.raises(ClientError, match=r"m'\): request failed after 3 attempts"):
            await client.complete(MESSAGES)
    assert len(server.calls) == 3


async def test_max_tokens_usage_and_finish_reason() -> None:
    with ScriptedServer(reply=lambda req: Reply("a b c d e f g h", cached_tokens=2)) as server:
        client = make_client(server)
        cut = await client.complete(MESSAGES, max_tokens=3, temperature=0.5, stop=["\n\n"])
        streamed_text: list[str] = []
        full = await client.complete(MESSAGES, stream=True, on_text=streamed_text.append)
    assert (cut.text, cut.finish_reason, cut.truncated) == ("a b c", "length", True)
    assert cut.usage.completion_tokens == 3 and cut.usage.cached_tokens == 2 and cut.usage.calls == 1
    assert server.calls[0]["temperature"] == 0.5 and server.calls[0]["stop"] == ["\n\n"]
    assert "".join(streamed_text) == full.text == "a b c d e f g h"
    assert full.usage.completion_tokens == 8


async def test_response_format_is_passed_through() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    with ScriptedServer(reply=lambda req: '{"x": 1}') as server:
        await make_client(server, capabilities=Capabilities(json_schema=True)).complete(
            MESSAGES, response_format=json_schema_format("thing", schema)
        )
    assert server.calls[0]["response_format"]["json_schema"]["schema"] == schema


async def test_concurrency_limit_bounds_in_flight_requests() -> None:
    in_flight, peak = 0, 0

    def reply(req):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        time.sleep(0.1)
        in_flight -= 1
        return "ok"

    with ScriptedServer(reply=reply) as server:
        client = make_client(server, concurrency=2)
        await asyncio.gather(*(client.complete(MESSAGES) for _ in range(6)))
    assert peak == 2


async def test_client_errors_are_clear_and_not_retried() -> None:
    with ScriptedServer(script=[Fault.BAD_REQUEST]) as server:
        with pytest.raises(ClientError, match=r"127.0.0.1:\d+/v1 \(model 'm'\): HTTP 400: maximum context length"):
            await make_client(server).complete(MESSAGES)
        assert len(server.calls) == 1
        wrong_path = OpenAIChatClient(base_url=server.base_url.replace("/v1", "/nope"), model="m")
        with pytest.raises(ClientError, match="HTTP 404"):
            await wrong_path.complete(MESSAGES)


def test_api_key_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ScriptedServer(script=[Fault.UNAVAILABLE]) as server:
        client = make_client(server, api_key="sk-secret-123")
        assert "sk-secret" not in repr(client)
        with SyncChatClient(client) as sync:
            assert sync.complete(MESSAGES, max_tokens=2).text == "word0 word1"
    assert "sk-secret" not in caplog.text


def test_sync_client_works_inside_a_running_loop() -> None:
    async def main() -> str:
        with ScriptedServer(reply=lambda req: "inside") as server, SyncChatClient(make_client(server)) as sync:
            return sync.complete(MESSAGES).text

    assert asyncio.run(main()) == "inside"
