"""Predict and judge stages against real HTTP with injected faults: the paper's settings, resume, retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lw_bench import (
    BenchError,
    judge,
    judge_prediction,
    judge_prompt,
    load_template,
    predict,
    read_judgments,
    read_predictions,
    score_run,
)
from lw_core import DIMENSIONS, BenchItem, Capabilities, OpenAIChatClient, Prediction
from lw_core.testing import Fault, ScriptedServer

Reply = Callable[[dict[str, Any]], str]

ITEMS = [
    BenchItem(prompt="Write a 100-word note to a neighbour", length=100, type="Functional Writing"),
    BenchItem(prompt="写一篇关于春天的短文，300字", length=300, type="Literature"),
    BenchItem(prompt="Write a 2000-word essay on rivers", length=2000, type="Essay"),
]


def _client(server: ScriptedServer, **kwargs: Any) -> OpenAIChatClient:
    options: dict[str, Any] = {"backoff_s": 0.01, "max_retries": 3, **kwargs}
    return OpenAIChatClient(base_url=server.base_url, model="scripted", **options)


async def test_predict_writes_one_line_per_item_with_usage(tmp_path: Path, model_or_judge: Reply) -> None:
    out = tmp_path / "pred.jsonl"
    with ScriptedServer(model_or_judge) as server:
        result = await predict(_client(server), ITEMS, out, max_tokens=64, temperature=0.7, top_p=0.9)
    assert (result.done, result.skipped, result.failed) == (3, 0, 0)
    predictions = read_predictions(out)
    assert {p.id for p in predictions} == {i.id for i in ITEMS}
    assert all(p.model == "scripted" and p.finish_reason and p.usage.completion_tokens > 0 for p in predictions)
    by_id = {p.id: p for p in predictions}
    first = by_id[ITEMS[0].id]
    assert (first.word_count, first.finish_reason, first.length) == (64, "length", 100)  # cut at max_tokens
    assert by_id[ITEMS[2].id].word_count == 40 and by_id[ITEMS[2].id].finish_reason == "stop"
    assert {c["max_tokens"] for c in server.calls} == {64} and {c["temperature"] for c in server.calls} == {0.7}
    assert result.usage.calls == 3


async def test_predict_resumes_without_redoing_finished_items(tmp_path: Path, model_or_judge: Reply) -> None:
    out = tmp_path / "pred.jsonl"
    with ScriptedServer(model_or_judge) as server:
        await predict(_client(server), ITEMS[:2], out, max_tokens=32)
        with out.open("a") as fh:  # a run killed mid-write
            fh.write('{"id": "torn", "prom')
        result = await predict(_client(server), ITEMS, out, max_tokens=32, samples=2)
    assert (result.skipped, result.done) == (2, 4)  # 2 from before; item 3 twice + items 1, 2 as sample 1
    assert len(server.calls) == 2 + 4
    assert len(read_predictions(out)) == 6
    assert "torn" not in out.read_text()


async def test_predict_survives_transient_faults_and_reports_hard_failures(
    tmp_path: Path, model_or_judge: Reply
) -> None:
    out = tmp_path / "pred.jsonl"
    script = [Fault.RATE_LIMIT, Fault.MALFORMED, Fault.UNAVAILABLE]
    with ScriptedServer(model_or_judge, script=script) as server:
        result = await predict(_client(server), ITEMS, out, max_tokens=16, concurrency=1)
    assert (result.done, result.failed) == (3, 0)
    with ScriptedServer(model_or_judge, script=[Fault.BAD_REQUEST]) as server:
        result = await predict(_client(server), ITEMS[:1], tmp_path / "other.jsonl", max_tokens=16)
    assert (result.done, result.failed) == (0, 1)
    assert "HTTP 400" in result.errors[0]
    assert not (tmp_path / "other.jsonl").read_text()  # nothing half-written for the failed item


def _prediction(response: str) -> Prediction:
    return Prediction(id="p1", prompt="Write a 100-word note", response=response, length=100)


async def test_predict_samples_as_the_paper_by_default(tmp_path: Path, model_or_judge: Reply) -> None:
    with ScriptedServer(model_or_judge) as server:
        await predict(_client(server), ITEMS[:1], tmp_path / "p.jsonl")
    call = server.calls[0]
    assert (call["temperature"], call["top_p"], call["max_tokens"]) == (0.5, 0.8, 32768)  # pred.py + GLM-4 chat()
    assert call["messages"] == [{"role": "user", "content": ITEMS[0].prompt}]


@pytest.mark.parametrize("json_schema", [True, False])
async def test_paper_judge_sends_the_papers_prompt_and_settings(json_schema: bool, model_or_judge: Reply) -> None:
    prediction = _prediction("good text")
    with ScriptedServer(model_or_judge) as server:
        client = _client(server, capabilities=Capabilities(json_schema=json_schema))
        judgment = await judge_prediction(client, prediction)
    assert judgment.status == "ok" and judgment.scores == {d: 5 for d in DIMENSIONS}
    call = server.calls[0]
    assert call["messages"] == [{"role": "user", "content": judge_prompt(prediction.prompt, prediction.response)}]
    assert (call["temperature"], call["max_tokens"], call.get("response_format")) == (0.5, 1024, None)


@pytest.mark.parametrize("json_schema", [True, False])
async def test_lw_judge_asks_for_json_schema_exactly_when_supported(json_schema: bool, model_or_judge: Reply) -> None:
    with ScriptedServer(model_or_judge) as server:
        client = _client(server, capabilities=Capabilities(json_schema=json_schema))
        judgment = await judge_prediction(client, _prediction("good text"), preset="lw")
    assert judgment.status == "ok" and judgment.scores == {d: 5 for d in DIMENSIONS}
    formats = [c.get("response_format") for c in server.calls]
    if json_schema:
        assert formats[0]["type"] == "json_schema"
        assert set(formats[0]["json_schema"]["schema"]["required"]) >= set(DIMENSIONS)
    else:
        assert formats == [None]
    assert server.calls[0]["temperature"] == 0.5 and server.calls[0]["max_tokens"] == 1024


async def test_judge_retries_incomplete_replies_then_records_a_failure() -> None:
    replies = iter(["no json here", json.dumps({"Relevance": 4}), json.dumps({d: 4 for d in DIMENSIONS})])
    with ScriptedServer(lambda _: next(replies)) as server:
        judgment = await judge_prediction(_client(server), _prediction("text"), retries=4)
    assert judgment.status == "ok" and judgment.attempts == 3 and judgment.usage.calls == 3
    with ScriptedServer(lambda _: "I refuse to rate this.") as server:
        judgment = await judge_prediction(_client(server), _prediction("text"), retries=2)
    assert judgment.status == "failed" and judgment.attempts == 3 and len(server.calls) == 3
    assert "not JSON" in (judgment.error or "") and judgment.scores == {}


async def test_a_non_retryable_error_fails_the_judgment_at_once_with_the_reason() -> None:
    with ScriptedServer(script=[Fault.BAD_REQUEST] * 10) as server:
        judgment = await judge_prediction(_client(server), _prediction("text"), retries=4)
    assert len(server.calls) == 1  # not 5: a context overflow would fail the same way every time
    assert judgment.status == "failed" and judgment.attempts == 1
    assert "HTTP 400" in (judgment.error or "") and "not retryable" in (judgment.error or "")


async def test_the_judge_adds_no_retries_on_top_of_the_clients() -> None:
    with ScriptedServer(script=[Fault.UNAVAILABLE] * 50) as server:
        client = _client(server)
        judgment = await judge_prediction(client, _prediction("text"), retries=4)
    assert len(server.calls) == client.max_retries + 1  # the client's own attempts, once
    assert judgment.status == "failed" and "retries exhausted" in (judgment.error or "")


async def test_judge_stage_replicates_resumes_and_feeds_the_score(tmp_path: Path, model_or_judge: Reply) -> None:
    predictions = [
        Prediction(id="a", prompt="p a", response="good " + "w " * 99, length=100),
        Prediction(id="b", prompt="p b", response="bad answer", length=100),
    ]
    out = tmp_path / "judge.jsonl"
    with ScriptedServer(model_or_judge, fault_rate=0.3, seed=3) as server:
        # transient faults are the client's to retry (the judge adds none): give it room, 0.3^9 to fail
        first = await judge(_client(server, max_retries=8), predictions, out, replicates=3, concurrency=2)
        calls = len(server.calls)
        again = await judge(_client(server), predictions, out, replicates=3)
        assert len(server.calls) == calls  # nothing left to do
    assert first.done == 6 and again.skipped == 6 and again.done == 0
    report = score_run(predictions, read_judgments(out))
    assert report.overall.n_judged == 6 and report.meta["replicates"] == 3
    assert report.overall.dimensions["Clarity"] == pytest.approx(((5 + 2) / 2 - 1) * 25)
    assert report.dimension_std["Clarity"] == 0.0  # a deterministic judge has no variance


async def test_failed_judgments_are_retried_only_when_asked(tmp_path: Path, model_or_judge: Reply) -> None:
    out = tmp_path / "judge.jsonl"
    predictions = [_prediction("good")]
    with ScriptedServer(lambda _: "nope") as server:
        result = await judge(_client(server), predictions, out, retries=0)
    assert result.failed == 1
    with ScriptedServer(model_or_judge) as server:
        assert (await judge(_client(server), predictions, out)).skipped == 1
        assert server.calls == []
        assert (await judge(_client(server), predictions, out, retry_failed=True)).done == 1
    assert len(read_judgments(out)) == 2  # the failure stays in the file; the later success wins
    report = score_run(predictions, read_judgments(out))
    assert report.judge_failures == 0 and report.overall.quality_score == 100.0


def test_stages_can_run_from_sync_code(tmp_path: Path, model_or_judge: Reply) -> None:
    with ScriptedServer(model_or_judge) as server:
        result = asyncio.run(predict(_client(server), ITEMS[:1], tmp_path / "p.jsonl", max_tokens=8))
    assert result.done == 1


async def test_a_user_template_replaces_the_presets(tmp_path: Path, model_or_judge: Reply) -> None:
    template = tmp_path / "judge.txt"
    template.write_text("PAPER PROMPT\n[Instruction]\n$INST$\n<<<RESPONSE\n$RESPONSE$\nRESPONSE>>>\n")
    with ScriptedServer(model_or_judge) as server:
        result = await judge(_client(server), [_prediction("good one")], tmp_path / "j.jsonl", template=template)
    assert result.done == 1
    sent = server.calls[0]["messages"][0]["content"]
    assert sent.startswith("PAPER PROMPT\n[Instruction]\nWrite a 100-word note\n") and "good one" in sent


def test_a_template_without_placeholders_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "judge.txt"
    template.write_text("Rate this: {response}")
    with pytest.raises(BenchError, match=r"lacks \$INST\$, \$RESPONSE\$"):
        load_template(template)
