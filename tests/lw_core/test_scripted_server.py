"""ScriptedServer's faults reach any HTTP client as a real server's would (so the client tests test something real)."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from lw_core.testing import Fault, ScriptedServer

BODY = {"model": "m", "messages": [{"role": "user", "content": "Hello"}]}


def _read(server: ScriptedServer, stream: bool, read_timeout: float = 5.0) -> httpx.Response:
    url = server.base_url + "/chat/completions"
    with httpx.stream("POST", url, json={**BODY, "stream": stream}, timeout=httpx.Timeout(5, read=read_timeout)) as r:
        r.read()
        return r


@pytest.mark.parametrize("stream", [True, False])
def test_cut_is_a_chunked_body_cut_mid_chunk(stream: bool) -> None:
    with ScriptedServer(script=[Fault.CUT]) as server, pytest.raises(httpx.RemoteProtocolError, match="chunked"):
        _read(server, stream)


@pytest.mark.parametrize("stream", [True, False])
def test_reset_is_a_connection_reset(stream: bool) -> None:
    with ScriptedServer(script=[Fault.RESET]) as server, pytest.raises(httpx.ReadError, match="reset"):
        _read(server, stream)


def test_stall_sends_part_of_the_stream_then_nothing() -> None:
    pieces: list[str] = []
    with ScriptedServer(reply=lambda request: "one two three four", script=[Fault.STALL], stall_s=30) as server:
        url = server.base_url + "/chat/completions"
        started = time.perf_counter()
        with (
            pytest.raises(httpx.ReadTimeout),
            httpx.stream("POST", url, json={**BODY, "stream": True}, timeout=httpx.Timeout(5, read=0.5)) as response,
        ):
            pieces.extend(response.iter_lines())
    assert any('"one "' in line for line in pieces) and not any("[DONE]" in line for line in pieces)
    assert time.perf_counter() - started < 5  # the server went silent; it did not hang up


def test_truncated_stream_ends_cleanly_without_a_finish() -> None:
    with ScriptedServer(reply=lambda request: "one two three four", script=[Fault.TRUNCATED]) as server:
        text = _read(server, stream=True).text
    assert '"one "' in text and 'finish_reason": "stop' not in text and "[DONE]" not in text


def test_a_normal_stream_is_chunked_and_complete() -> None:
    with ScriptedServer(reply=lambda request: "one two") as server:
        response = _read(server, stream=True)
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text.rstrip().endswith("data: [DONE]")


def test_retry_after_can_be_an_http_date() -> None:
    date = email.utils.formatdate(time.time() + 60, usegmt=True)
    with ScriptedServer(script=[Fault.RATE_LIMIT], retry_after_s=date) as server:
        response = httpx.post(server.base_url + "/chat/completions", json=BODY)
    assert response.status_code == 429 and response.headers["retry-after"] == date
