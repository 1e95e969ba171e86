import asyncio
import email.utils
import logging
import time
from pathlib import Path

import pytest
from lw_core import Capabilities, ClientError, OpenAIChatClient, SyncChatClient, json_schema_format
from lw_core.testing import Fault, Reply, ScriptedServer

MESSAGES = [{"role": "user", "content": "Say something."}]
#: Every fault a retry should get past, with the status the last attempt reports (None: no error status).
RETRYABLE = {
    Fault.RATE_LIMIT: 429,
    Fault.UNAVAILABLE: 503,
    Fault.MALFORMED: None,
    Fault.TRUNCATED: None,
    Fault.CUT: None,
    Fault.RESET: None,
    Fault.STALL: None,
}


def make_client(server: ScriptedServer, **kwargs) -> OpenAIChatClient:  # type: ignore[no-untyped-def]
    options = {"backoff_s": 0.01, "stall_timeout": 1.0, **kwargs}
    return OpenAIChatClient(base_url=server.base_url, model="m", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [False, True])
async def test_every_fault_kind_is_retried(stream: bool) -> None:
    faults = list(RETRYABLE)
    with ScriptedServer(reply=lambda req: "all good here", script=faults) as server:
        pieces: list[str] = []
        client = make_client(server, max_retries=len(faults))
        result = await client.complete(MESSAGES, stream=stream, on_text=pieces.append)
    assert result.text == "all good here" and result.finish_reason == "stop"
    assert server.faults == [*faults, Fault.NONE]
    assert all(call["stream"] for call in server.calls)  # streamed internally either way
    assert "".join(pieces).endswith("all good here") == stream  # on_text only when the caller streams


@pytest.mark.parametrize("fault", list(RETRYABLE))
async def test_defaults_make_at_most_seven_attempts_then_say_so(fault: Fault) -> None:
    with ScriptedServer(script=[fault] * 20, stall_s=5) as server:
        client = OpenAIChatClient(base_url=server.base_url, model="m", backoff_s=0.01, stall_timeout=0.5)
        with pytest.raises(ClientError, match=r"m'\): request failed after 7 attempts") as err:
            await client.complete(MESSAGES)
        assert len(server.calls) == 7
    assert (err.value.attempts, err.value.retryable, err.value.status_code) == (7, True, RETRYABLE[fault])


async def test_context_overflow_is_not_retried() -> None:
    with ScriptedServer(script=[Fault.UNAVAILABLE, Fault.BAD_REQUEST]) as server:
        with pytest.raises(ClientError, match=r"127.0.0.1:\d+/v1 \(model 'm'\): HTTP 400: the request needs") as err:
            await make_client(server).complete(MESSAGES)
        assert "9000 tokens" in str(err.value) and "holds 8192" in str(err.value), "both numbers, as the server said"
        assert "context_length" in str(err.value) and "--ctx-size" in str(err.value), "and what to raise"
        assert len(server.calls) == 2
        wrong_path = OpenAIChatClient(base_url=server.base_url.replace("/v1", "/nope"), model="m")
        with pytest.raises(ClientError, match="HTTP 404"):
            await wrong_path.complete(MESSAGES)
    assert (err.value.status_code, err.value.retryable, err.value.attempts) == (400, False, 2)


async def test_retry_after_in_seconds_is_honoured() -> None:
    with ScriptedServer(script=[Fault.RATE_LIMIT], retry_after_s=0.6) as server:
        start = time.perf_counter()
        await make_client(server).complete(MESSAGES, max_tokens=3)
    assert time.perf_counter() - start >= 0.55


async def test_retry_after_as_an_http_date_is_honoured() -> None:
    # HTTP dates have whole seconds: 3 s ahead means a wait of more than 2 s (backoff alone would be ~10 ms)
    retry_at = email.utils.formatdate(time.time() + 3, usegmt=True)
    with ScriptedServer(script=[Fault.RATE_LIMIT], retry_after_s=retry_at) as server:
        start = time.perf_counter()
        await make_client(server).complete(MESSAGES, max_tokens=3)
    assert time.perf_counter() - start > 1.9
    assert server.faults == [Fault.RATE_LIMIT, Fault.NONE]


async def test_a_retry_after_beyond_the_backoff_cap_fails_at_once_and_retryable() -> None:
    server = ScriptedServer(script=[Fault.RATE_LIMIT], retry_after_s=3600)
    with server, pytest.raises(ClientError, match="asks to wait 3600 s") as err:
        await make_client(server, max_backoff_s=60).complete(MESSAGES)
    assert (err.value.status_code, err.value.retryable, err.value.attempts) == (429, True, 1)


async def test_a_slow_but_live_server_never_times_out() -> None:
    # 20 pieces, 0.1 s apart: 2 s in all, far past `timeout`, but never silent for `stall_timeout`
    with ScriptedServer(reply=lambda req: " ".join(["word"] * 20), token_interval_s=0.1) as server:
        result = await make_client(server, timeout=0.5, stall_timeout=1.0).complete(MESSAGES)
    assert result.text.split() == ["word"] * 20 and len(server.calls) == 1


async def test_a_stalled_stream_is_dropped_after_stall_timeout_and_retried() -> None:
    with ScriptedServer(reply=lambda req: "a b c d", script=[Fault.STALL], stall_s=60) as server:
        start = time.perf_counter()
        result = await make_client(server, stall_timeout=0.4).complete(MESSAGES)
        elapsed = time.perf_counter() - start
    assert result.text == "a b c d" and server.faults == [Fault.STALL, Fault.NONE]
    assert 0.35 < elapsed < 10  # detected by the silence, not by the server giving up after 60 s


async def test_waiting_for_the_first_token_is_bounded_by_timeout() -> None:
    with ScriptedServer(reply=lambda req: "late", script=[Fault.SLOW], slow_s=3) as server:
        start = time.perf_counter()
        result = await make_client(server, timeout=0.4).complete(MESSAGES)
        elapsed = time.perf_counter() - start
    assert result.text == "late" and server.faults == [Fault.SLOW, Fault.NONE] and elapsed < 2.5


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


def test_api_key_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ScriptedServer(script=[Fault.UNAVAILABLE]) as server:
        client = make_client(server, api_key="sk-secret-123")
        assert "sk-secret" not in repr(client)
        with SyncChatClient(client) as sync:
            assert sync.complete(MESSAGES, max_tokens=2).text == "word0 word1"
    assert "attempt 1/7 failed (HTTP 503: overloaded)" in caplog.text
    assert "sk-secret" not in caplog.text


def test_sync_client_works_inside_a_running_loop() -> None:
    async def main() -> str:
        with ScriptedServer(reply=lambda req: "inside") as server, SyncChatClient(make_client(server)) as sync:
            return sync.complete(MESSAGES).text

    assert asyncio.run(main()) == "inside"


def test_many_clients_do_not_pile_up_memory() -> None:
    """Each client used to build its own TLS context (~0.8 MB kept): 200 clients grew the process by ~160 MB."""

    def rss_mb() -> float:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

    before = rss_mb()
    clients = [OpenAIChatClient(base_url="https://example.invalid/v1", model="m") for _ in range(200)]
    assert all(client.openai.max_retries == 0 for client in clients)
    assert rss_mb() - before < 40
